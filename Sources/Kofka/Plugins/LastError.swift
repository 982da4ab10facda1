#if canImport(Glibc)
import Glibc
#endif

/// The calling thread's last error message for `kofka_last_error()`, kept in thread-local
/// storage (a pthread key whose destructor frees the string when the thread exits). It lives in
/// the core because the calls plugins make (`kofka_storage_register`, …) are core calls.
package enum LastError {
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { free($0) }
        return k
    }()
    nonisolated(unsafe) static let empty: UnsafePointer<CChar> = UnsafePointer(strdup("")!)

    package static func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    package static func clear() {
        if let old = pthread_getspecific(key) {
            free(old)
            pthread_setspecific(key, nil)
        }
    }

    package static func pointer() -> UnsafePointer<CChar> {
        if let p = pthread_getspecific(key) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
        return empty
    }
}
