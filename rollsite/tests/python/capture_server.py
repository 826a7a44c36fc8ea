"""A next hop that is not eggroll-rs code: a Python grpcio DataTransferService server, with
stubs generated from eggroll-rs's proxy.proto. It records every packet pushed to it (length
prefixed, as it decoded them) and acknowledges each push the way a roll-site does, so the
test can check that our roll-site's pushes are well-formed gRPC for another implementation.

usage: capture_server.py STUBS_DIR PORT_FILE CAPTURE_FILE
"""

import struct
import sys
import threading
from concurrent import futures

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import proxy_pb2  # noqa: E402
import proxy_pb2_grpc  # noqa: E402

LOCK = threading.Lock()


class Capture(proxy_pb2_grpc.DataTransferServiceServicer):
    def __init__(self, capture_file):
        self.capture_file = capture_file

    def push(self, request_iterator, context):
        first = None
        got = []
        for p in request_iterator:
            got.append(p)
            if first is None:
                first = p.header
        with LOCK, open(self.capture_file, "ab") as f:
            for p in got:
                b = p.SerializeToString()
                f.write(struct.pack(">I", len(b)))
                f.write(b)
        ack = proxy_pb2.Metadata()
        if first is not None:
            ack.CopyFrom(first)
        ack.ack = len(got)
        return ack


def main():
    _, _, port_file, capture_file = sys.argv
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
        ],
    )
    proxy_pb2_grpc.add_DataTransferServiceServicer_to_server(Capture(capture_file), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    import os

    os.rename(port_file + ".tmp", port_file)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
