import CKofka
#if canImport(Glibc)
import Glibc
#endif
import Kofka

// Topic configuration, DeleteRecords, maintenance (include/kofka.h, "Broker") and a broker's interceptors.

@c @implementation
public func kofka_topic_create_with_config(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partitions: Int32,
                                           _ config: UnsafePointer<UnsafePointer<CChar>?>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_topic_create_with_config")
        try br.createTopic(try string(topic, "topic", "kofka_topic_create_with_config"), partitions: partitions,
                           config: try configPairs(config))
    }
}

@c @implementation
public func kofka_topic_config_set(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?,
                                   _ config: UnsafePointer<UnsafePointer<CChar>?>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_topic_config_set")
        try br.setTopicConfig(try string(topic, "topic", "kofka_topic_config_set"), try configPairs(config))
    }
}

@c @implementation
public func kofka_topic_config_get(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ key: UnsafePointer<CChar>?,
                                   _ buf: UnsafeMutablePointer<CChar>?, _ len: UnsafeMutablePointer<Int>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_topic_config_get")
        let lenp = try need(len, "len", "kofka_topic_config_get")
        let k = try string(key, "key", "kofka_topic_config_get")
        let value = try br.topicConfig(try string(topic, "topic", "kofka_topic_config_get"), k)
        let bytes = Array(value.utf8)
        let room = UInt(bitPattern: lenp.pointee)
        lenp.pointee = bytes.count + 1
        guard let buf, room >= UInt(bytes.count + 1) else {
            throw invalidArg("kofka_topic_config_get: the value of '\(k)' needs \(bytes.count + 1) bytes, buf has \(room)")
        }
        for (i, c) in bytes.enumerated() { buf[i] = CChar(bitPattern: c) }
        buf[bytes.count] = 0
    }
}

@c @implementation
public func kofka_delete_records(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32,
                                 _ before_offset: Int64, _ low_watermark: UnsafeMutablePointer<Int64>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_delete_records")
        let low = try br.deleteRecords(try string(topic, "topic", "kofka_delete_records"), partition, before: before_offset)
        low_watermark?.pointee = low
    }
}

@c @implementation
public func kofka_broker_maintain(_ b: OpaquePointer?) -> kofka_err {
    run { try brokerHandle(b, "kofka_broker_maintain").maintain() }
}

// MARK: Interceptors (include/kofka.h, "Plugins")

@c @implementation
public func kofka_interceptors_add(_ b: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ ic: UnsafePointer<kofka_interceptors>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_interceptors_add")
        let n = try string(name, "name", "kofka_interceptors_add")
        try br.add(try CInterceptor(try need(ic, "ic", "kofka_interceptors_add")), name: n)
    }
}
