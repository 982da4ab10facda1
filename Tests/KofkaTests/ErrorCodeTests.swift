import Testing
@testable import Kofka

@Test func errorCodesHaveDistinctNamesMatchingTheHeader() {
    let names = ErrorCode.allCases.map(\.name)
    #expect(Set(names).count == names.count)
    #expect(ErrorCode.producerFenced.name == "KOFKA_ERR_PRODUCER_FENCED")
    #expect(ErrorCode.queueFull.rawValue == 18)
}
