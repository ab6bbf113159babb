"""The device runtime (`toolchain run`): head + exit on LiteRT, offload of the split to a v2 server.

Everything in this package imports only the standard library, numpy, ai_edge_litert, grpcio and
protobuf (lazily, only for the gRPC transport; REST when they are missing) and the TF-free toolchain
modules (errors, fsutil, data, progress), so it runs on a 64-bit Raspberry Pi with
`pip install toolchain[device]`. tests/test_edge_runtime.py checks that TensorFlow never loads.
"""
