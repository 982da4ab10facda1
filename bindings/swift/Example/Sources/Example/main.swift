// Produces three records with an exactly-once producer and reads them back in a consumer group.
import Kofka

let storage = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "memory:"
let broker = try Broker(storage)
defer { broker.close() }
try? broker.createTopic("greetings", partitions: 2)

let producer = try broker.producer(try ProducerConfig([("delivery.mode", "exactly-once")]))
for word in ["hello", "hallo", "hola"] {
    let md = try producer.send("greetings", Record(key: Array(word.utf8), value: Array(word.utf8)))
    print("sent \(word) to \(md)")
}
try producer.close()

let consumer = try broker.consumer(ConsumerConfig(groupId: "example"))
try consumer.subscribe(["greetings"])
var seen = 0
while seen < 3 {
    for m in try consumer.pollBatch(max: 10, timeout: .seconds(2)) {
        print("read \(String(decoding: m.value ?? [], as: UTF8.self)) from \(m.topic)[\(m.partition)]@\(m.offset)")
        seen += 1
    }
}
try consumer.close()
