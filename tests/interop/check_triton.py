"""`trainerd serve` through the real Triton client (tritonclient[http] from
PyPI): server liveness, model readiness and metadata, and inference on a
batch of test images whose labels must equal `trainerd predict`'s, as JSON
and with every default (Triton's binary tensor data, in and out).

Usage: check_triton.py HOST:PORT IMAGES.idx[.gz] PREDICT_LABELS.json
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from idx import read_idx

MODEL = "trainerd"


def main():
    url, images_path, labels_path = sys.argv[1:4]
    images = read_idx(images_path)
    with open(labels_path) as f:
        want = json.load(f)
    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live(), "server not live"
    assert client.is_server_ready(), "server not ready"
    assert client.is_model_ready(MODEL), "model not ready"
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL, meta
    assert meta["inputs"][0]["name"] == "pixels", meta
    assert meta["inputs"][0]["shape"][1:] == list(images.shape[1:]), meta

    pixels = (images.astype(np.float32) / 255.0)
    inp = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels, binary_data=False)
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("logits", binary_data=False),
    ]
    result = client.infer(MODEL, [inp], outputs=outputs)
    labels = result.as_numpy("label")
    logits = result.as_numpy("logits")
    assert logits.shape == (len(images), meta["outputs"][0]["shape"][1]), logits.shape
    assert labels.tolist() == want, "labels differ from trainerd predict's"
    assert (logits.argmax(1) == labels).all(), "label is not the argmax of the logits"

    # UINT8, one image per request on the client's kept-alive connection.
    for i in range(8):
        one = httpclient.InferInput("pixels", [1, images[0].size], "UINT8")
        one.set_data_from_numpy(images[i].reshape(1, -1), binary_data=False)
        r = client.infer(MODEL, [one], outputs=[httpclient.InferRequestedOutput("label", binary_data=False)])
        assert r.as_numpy("label").tolist() == [want[i]], (i, r.get_response())
    # Every default: binary tensors in (FP32 and UINT8) and out, the
    # outputs named or left to the server.
    binary = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    binary.set_data_from_numpy(pixels)
    r = client.infer(MODEL, [binary])
    assert r.as_numpy("label").tolist() == want, "binary FP32: labels differ"
    assert abs(r.as_numpy("logits") - logits).max() < 1e-5, "binary logits differ from JSON's"
    raw = httpclient.InferInput("pixels", list(images.shape), "UINT8")
    raw.set_data_from_numpy(images)
    r = client.infer(MODEL, [raw], outputs=[httpclient.InferRequestedOutput("label"),
                                            httpclient.InferRequestedOutput("probabilities")])
    assert r.as_numpy("label").tolist() == want, "binary UINT8: labels differ"
    probs = r.as_numpy("probabilities")
    assert abs(probs.sum(1) - 1).max() < 1e-4, "probabilities do not sum to 1"
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

    print(f"tritonclient: {len(images)} images agree with trainerd predict "
          f"(model version {result.get_response()['model_version']})")


if __name__ == "__main__":
    main()
