import Kofka

/// The processes mode (placeholder while it is written).
public enum LabProcesses {
    public static func explore(storage: String, seconds: Double, seed: UInt64, workers: Int, executable: String,
                               spawn: ([String]) throws -> Int32, print: (String) -> Void) throws -> LabExploreStats {
        throw KofkaError(.unsupported, "not yet")
    }
}
