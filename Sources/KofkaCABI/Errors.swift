import CKofka
import Kofka

// Error reporting for the C face: codes, names, descriptions and the thread-local last error.

@c @implementation
public func kofka_version() -> UnsafePointer<CChar>? {
    StaticStrings.version
}

@c @implementation
public func kofka_err_name(_ err: kofka_err) -> UnsafePointer<CChar>? {
    StaticStrings.name(Int32(bitPattern: err.rawValue))
}

@c @implementation
public func kofka_err_desc(_ err: kofka_err) -> UnsafePointer<CChar>? {
    StaticStrings.desc(Int32(bitPattern: err.rawValue))
}

@c @implementation
public func kofka_last_error() -> UnsafePointer<CChar>? {
    LastError.pointer()
}

@c @implementation
public func kofka_err_is_retriable(_ err: kofka_err) -> Int32 {
    guard let c = ErrorCode(rawValue: Int32(bitPattern: err.rawValue)) else { return 0 }
    return c.isRetriable ? 1 : 0
}
