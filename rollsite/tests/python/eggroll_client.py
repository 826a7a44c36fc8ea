"""A roll-site client that is not eggroll-rs code: Python grpcio stubs generated from
eggroll-rs's proxy.proto. It pushes and unary-calls EggRoll-shaped packets through a
roll-site and records every packet it sent, so the test can compare what the next hop got.

usage: eggroll_client.py STUBS_DIR ROLLSITE_ADDR SENT_FILE
"""

import struct
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import proxy_pb2  # noqa: E402
import proxy_pb2_grpc  # noqa: E402
import transfer_pb2  # noqa: E402

SESSION = "202411291200_wire"
SRC, DST = ("guest", "9999"), ("host", "10000")


def packet(name, tag, seq, last, total, value, data_type="object"):
    header = transfer_pb2.RollSiteHeader(
        rollSiteSessionId=SESSION,
        name=name,
        tag=tag,
        srcRole=SRC[0],
        srcPartyId=SRC[1],
        dstRole=DST[0],
        dstPartyId=DST[1],
        dataType=data_type,
        totalPartitions=1,
        partitionId=0,
        totalStreams=1,
        totalBatches=total,
        streamSeq=0,
        batchSeq=seq,
        stage="finish" if last else "",
    )
    header.options["size"] = "0"
    rs_key = "#".join(["__rsk", SESSION, name, tag, SRC[0], SRC[1], DST[0], DST[1]])
    meta = proxy_pb2.Metadata(
        task=proxy_pb2.Task(taskId=SESSION, model=proxy_pb2.Model(name=name, dataKey=rs_key)),
        src=proxy_pb2.Topic(name=name, partyId=SRC[1], role=SRC[0]),
        dst=proxy_pb2.Topic(name=name, partyId=DST[1], role=DST[0]),
        command=proxy_pb2.Command(name="push"),
        operator="push",
        seq=seq,
        ack=0,
        conf=proxy_pb2.Conf(overallTimeout=600000, completionWaitTimeout=600000,
                            packetIntervalTimeout=0, maxRetries=3),
        ext=header.SerializeToString(),
        version="2.4.0",
    )
    return proxy_pb2.Packet(header=meta, body=proxy_pb2.Data(key=rs_key, value=value))


def main():
    _, _, addr, sent_file = sys.argv
    channel = grpc.insecure_channel(addr)
    stub = proxy_pb2_grpc.DataTransferServiceStub(channel)
    sent = []

    # A push stream of three chunks of one object.
    chunks = [bytes((i * 7 + j) % 256 for j in range(100_000 + i)) for i in range(3)]
    stream = [packet("w", "fit.0", i, i == 2, 3, c) for i, c in enumerate(chunks)]
    ack = stub.push(iter(stream), timeout=30)
    sent.extend(stream)
    assert ack.dst.partyId == DST[1], ack

    # A unary call with one packet of another transfer.
    one = packet("b", "fit.1", 0, True, 1, b"\x00\x01unary payload\xff")
    reply = stub.unaryCall(one, timeout=30)
    sent.append(one)
    assert reply.header.dst.partyId == DST[1], reply

    # A packet for a party no route leads to: a gRPC error naming the party.
    bad = packet("c", "x", 0, True, 1, b"x")
    bad.header.dst.partyId = "424242"
    try:
        stub.unaryCall(bad, timeout=30)
        raise SystemExit("an unroutable packet was accepted")
    except grpc.RpcError as e:
        assert "424242" in e.details(), e.details()

    with open(sent_file, "wb") as f:
        for p in sent:
            b = p.SerializeToString()
            f.write(struct.pack(">I", len(b)))
            f.write(b)
    print("python client: ok")


if __name__ == "__main__":
    main()
