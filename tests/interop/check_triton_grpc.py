"""`trainerd serve --grpc-addr` through Triton's own gRPC client
(tritonclient[grpc] from PyPI) with every default: liveness, readiness,
server and model metadata, inference on a batch as raw FP32 and raw UINT8
(labels must equal `trainerd predict`'s), typed `contents` through Triton's
own generated stub, and the errors a client gets for an unknown model, a
bad shape and a message over the server's cap.

Usage: check_triton_grpc.py HOST:PORT IMAGES.idx[.gz] PREDICT_LABELS.json
"""

import json
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException
from idx import read_idx

MODEL = "trainerd"


def expect_error(code, call):
    try:
        call()
    except InferenceServerException as e:
        assert code in str(e.status()), (code, e.status(), e.message())
        return e.message()
    raise AssertionError(f"expected {code}")


def infer_checks(client, images, want):
    pixels = images.astype(np.float32) / 255.0
    inp = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    result = client.infer(MODEL, [inp])
    labels = result.as_numpy("label")
    logits = result.as_numpy("logits")
    assert labels.tolist() == want, "raw FP32: labels differ from trainerd predict's"
    assert (logits.argmax(1) == labels).all(), "label is not the argmax of the logits"
    raw = grpcclient.InferInput("pixels", [len(images), images[0].size], "UINT8")
    raw.set_data_from_numpy(images.reshape(len(images), -1))
    outs = [grpcclient.InferRequestedOutput("label"), grpcclient.InferRequestedOutput("probabilities")]
    r = client.infer(MODEL, [raw], outputs=outs, request_id="batch-1")
    assert r.as_numpy("label").tolist() == want, "raw UINT8: labels differ"
    assert abs(r.as_numpy("probabilities").sum(1) - 1).max() < 1e-4
    assert r.get_response().id == "batch-1", r.get_response()
    for i in range(8):
        one = grpcclient.InferInput("pixels", [1, 1] + list(images.shape[2:]), "UINT8")
        one.set_data_from_numpy(images[i : i + 1])
        r = client.infer(MODEL, [one], outputs=[grpcclient.InferRequestedOutput("label")])
        assert r.as_numpy("label").tolist() == [want[i]], i
    return result, logits


def typed_contents(url, images, want, logits):
    """Typed `contents` (no raw bytes), through Triton's own generated stub."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
    req = service_pb2.ModelInferRequest(model_name=MODEL)
    t = req.inputs.add(name="pixels", datatype="FP32", shape=list(images.shape))
    t.contents.fp32_contents.extend((images.astype(np.float32) / 255.0).ravel().tolist())
    resp = stub.ModelInfer(req)
    names = [o.name for o in resp.outputs]
    got = np.frombuffer(resp.raw_output_contents[names.index("label")], np.int64)
    assert got.tolist() == want, "typed contents: labels differ"
    typed_logits = np.frombuffer(resp.raw_output_contents[names.index("logits")], np.float32)
    assert abs(typed_logits.reshape(logits.shape) - logits).max() < 1e-5


def error_checks(client, images):
    expect_error("NOT_FOUND", lambda: client.get_model_metadata("nope"))
    bad = grpcclient.InferInput("pixels", [1, 5], "UINT8")
    bad.set_data_from_numpy(np.zeros((1, 5), np.uint8))
    msg = expect_error("INVALID_ARGUMENT", lambda: client.infer(MODEL, [bad]))
    assert "expected" in msg, msg
    # 5,500 FP32 images: 17 MB, over the 16 MiB message cap.
    big = np.zeros((5500,) + images.shape[1:], np.float32)
    over = grpcclient.InferInput("pixels", list(big.shape), "FP32")
    over.set_data_from_numpy(big)
    msg = expect_error("RESOURCE_EXHAUSTED", lambda: client.infer(MODEL, [over]))
    assert "limit" in msg, msg


def main():
    url, images_path, labels_path = sys.argv[1:4]
    images = read_idx(images_path)
    with open(labels_path) as f:
        want = json.load(f)
    client = grpcclient.InferenceServerClient(url=url)
    assert client.is_server_live(), "server not live"
    assert client.is_server_ready(), "server not ready"
    assert client.is_model_ready(MODEL), "model not ready"
    assert client.get_server_metadata().name == "trainerd"
    meta = client.get_model_metadata(MODEL)
    assert meta.name == MODEL, meta
    assert meta.inputs[0].name == "pixels", meta
    assert list(meta.inputs[0].shape[1:]) == list(images.shape[1:]), meta
    assert [o.name for o in meta.outputs] == ["logits", "probabilities", "label"], meta
    result, logits = infer_checks(client, images, want)
    typed_contents(url, images, want, logits)
    error_checks(client, images)
    assert client.is_server_live(), "not live after the errors"
    print(f"tritonclient.grpc: {len(images)} images agree with trainerd predict "
          f"(model version {result.get_response().model_version})")


if __name__ == "__main__":
    main()
