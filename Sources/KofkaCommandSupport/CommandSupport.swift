import ArgumentParser
import Kofka
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the package's two programs share: `kofka` (kofka-cli) and the benchmark, `kofka-bench`.
/// How a command runs and fails, and the small formatting helpers their output uses.
public enum CommandMain {
    /// Parses the arguments as `Command` and runs it; every failure prints one line
    /// `NAME: error: …` and exits non-zero (`NAME` is the program's name, e.g. "kofka").
    ///
    /// ```swift
    /// @main struct KofkaCommand: ParsableCommand {
    ///     static func main() { CommandMain.run(Self.self, name: "kofka") }
    /// }
    /// ```
    public static func run(_ command: ParsableCommand.Type, name: String) -> Never {
        let parsed: ParsableCommand
        do {
            parsed = try command.parseAsRoot()
        } catch {
            fail(command, error, name: name)
        }
        do {
            var c = parsed
            try c.run()
        } catch {
            fail(command, error, name: name)
        }
        exit(0)
    }

    static func fail(_ command: ParsableCommand.Type, _ error: Error, name: String) -> Never {
        if let e = error as? KofkaError {
            die("\(e.code.name): \(e.message)", name: name)
        }
        if let e = error as? CLIError {
            die(e.message, name: name)
        }
        let code = command.exitCode(for: error)
        if code == .success {
            // --help, --version
            print(command.fullMessage(for: error))
            exit(0)
        }
        var text = command.message(for: error)
        if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
        let first = text.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? "failed"
        fflush(stdout)
        fputs("\(name): error: \(first) (see '\(name) --help')\n", stderr)
        exit(code.rawValue == 0 ? 1 : code.rawValue)
    }

    static func die(_ line: String, name: String) -> Never {
        fflush(stdout)
        fputs("\(name): error: \(line)\n", stderr)
        exit(1)
    }
}

/// A failure of the command itself (not of the library), printed as one line.
public struct CLIError: Error {
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// Writes bytes to stdout through one buffer; flushed explicitly.
public struct Out {
    public var buf: [UInt8] = []
    public init() { buf.reserveCapacity(1 << 16) }
    public mutating func put(_ s: String) { buf.append(contentsOf: s.utf8) }
    public mutating func put(_ b: [UInt8]) { buf.append(contentsOf: b) }
    public mutating func put(_ b: UInt8) { buf.append(b) }
    public mutating func flush() {
        guard !buf.isEmpty else { return }
        buf.withUnsafeBytes { p in _ = fwrite(p.baseAddress, 1, p.count, stdout) }
        fflush(stdout)
        buf.removeAll(keepingCapacity: true)
    }
}

/// Appends `s` to `out` as a JSON string, quoted and escaped.
public func jsonString(_ s: String, _ out: inout Out) {
    out.put(UInt8(ascii: "\""))
    for c in s.utf8 {
        switch c {
        case UInt8(ascii: "\""): out.put("\\\"")
        case UInt8(ascii: "\\"): out.put("\\\\")
        case 0x0a: out.put("\\n")
        case 0x0d: out.put("\\r")
        case 0x09: out.put("\\t")
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            out.put("\\u00")
            out.put(hex[Int(c >> 4)])
            out.put(hex[Int(c & 15)])
        default: out.put(c)
        }
    }
    out.put(UInt8(ascii: "\""))
}

public func stderrLine(_ s: String) { fputs(s + "\n", stderr) }

/// `x` with `decimals` digits after the point (no Foundation).
public func fmt(_ x: Double, _ decimals: Int) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    _ = withVaList([x]) { vsnprintf(&buf, 64, "%.\(decimals)f", $0) }
    return String(cString: buf)
}

/// Pads columns to equal width, separated by two spaces (or `sep`).
public func alignTable(_ rows: [[String]], rightAligned: Set<Int> = [], sep: String = "  ") -> [String] {
    guard let n = rows.map(\.count).max() else { return [] }
    var widths = [Int](repeating: 0, count: n)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    return rows.map { r in
        r.enumerated().map { i, c in
            let pad = String(repeating: " ", count: widths[i] - c.count)
            return rightAligned.contains(i) ? pad + c : (i == r.count - 1 ? c : c + pad)
        }.joined(separator: sep)
    }
}

extension String {
    public func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    public func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

extension Duration {
    public var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}

/// The path of the running executable.
public func selfExecutable() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
}

/// The path of the file `name` in the folder of the running executable (where `swift build`
/// puts the package's programs and plugins side by side).
public func besideCommand(_ name: String) -> String {
    let exe = selfExecutable()
    return String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)]) + "/" + name
}
