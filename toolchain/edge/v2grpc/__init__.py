"""Generated Open Inference Protocol (v2) gRPC modules; see grpc_predict_v2.proto and generate.py."""
