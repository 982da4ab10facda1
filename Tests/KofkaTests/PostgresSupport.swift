import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Kofka
import KofkaLab

/// PostgreSQL joins the backends every behaviour test and the conformance suite run on when
/// `KOFKA_PG_URL` names a server (scripts/pg.sh starts a throwaway one; scripts/test.sh does it
/// itself). Each test gets a store of its own: a fresh schema, dropped when it ends.
let postgresKinds: [String] = LabPostgres.testURL == nil ? [] : ["postgresql"]

/// A PostgreSQL storage backend on a fresh schema, through the plugin (libkofka_postgresql.so,
/// found beside the test bundle as it is beside libkofka.so), and its schema.
func makePostgres(tag: String, config: [(String, String)] = []) throws -> (any StorageBackend, String) {
    guard let url = LabPostgres.testURL else { throw KofkaError(.invalidArg, "KOFKA_PG_URL is not set") }
    let (storage, schema) = LabPostgres.freshStore(url, tag: tag)
    let factory = try PluginLoader.factory(scheme: "postgresql", config: config)
    return (try factory(String(storage.dropFirst("postgresql:".count)), config), schema)
}
