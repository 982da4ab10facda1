import CKofka
import Kofka
#if canImport(Glibc)
import Glibc
#endif

/// Static C strings for names and descriptions, made once and never freed.
enum StaticStrings {
    nonisolated(unsafe) static let version: UnsafePointer<CChar> = make(Kofka.version)
    nonisolated(unsafe) static let names: [UnsafePointer<CChar>] = ErrorCode.allCases.map { make($0.name) }
    nonisolated(unsafe) static let descs: [UnsafePointer<CChar>] = ErrorCode.allCases.map { make($0.description) }
    nonisolated(unsafe) static let unknownName: UnsafePointer<CChar> = make("KOFKA_ERR_UNKNOWN")
    nonisolated(unsafe) static let unknownDesc: UnsafePointer<CChar> = make("Unknown error code.")

    static func make(_ s: String) -> UnsafePointer<CChar> { UnsafePointer(strdup(s)!) }

    static func name(_ code: Int32) -> UnsafePointer<CChar> {
        guard let c = ErrorCode(rawValue: code), let i = ErrorCode.allCases.firstIndex(of: c) else { return unknownName }
        return names[i]
    }

    static func desc(_ code: Int32) -> UnsafePointer<CChar> {
        guard let c = ErrorCode(rawValue: code), let i = ErrorCode.allCases.firstIndex(of: c) else { return unknownDesc }
        return descs[i]
    }
}

/// The calling thread's last error message, kept in thread-local storage (a pthread key whose
/// destructor frees the string when the thread exits).
enum LastError {
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { free($0) }
        return k
    }()
    nonisolated(unsafe) static let empty: UnsafePointer<CChar> = StaticStrings.make("")

    static func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    static func clear() {
        if let old = pthread_getspecific(key) {
            free(old)
            pthread_setspecific(key, nil)
        }
    }

    static func pointer() -> UnsafePointer<CChar> {
        if let p = pthread_getspecific(key) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
        return empty
    }
}
