"""onnxruntime's own throughput on a model.onnx, for bench/serve.sh to
compare `trainerd serve` with: batches of BATCH images (values in [0, 1])
in a loop on one InferenceSession (intra-op THREADS, inter-op 1, every
graph optimisation on), as the serve batcher runs it. Also prints images
per CPU-second of this process, to set beside the served images per CPU-second
of the server (bench/serve.sh), which leaves out the load generator's share
of the cores.

    python3 bench/ort_throughput.py MODEL_ONNX THREADS BATCH SECONDS
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    model, threads, batch, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [batch] + [int(d) for d in inp.shape[1:]]
    per = int(np.prod(shape[1:]))
    x = (np.arange(batch * per) % 256).astype(np.float32).reshape(shape) / 255.0
    sess.run(None, {inp.name: x})
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    end = start + seconds
    while time.perf_counter() < end:
        sess.run(None, {inp.name: x})
        done += batch
    rate = done / (time.perf_counter() - start)
    per_cpu = done / max(time.process_time() - cpu, 1e-9)
    print(f"onnxruntime {ort.__version__} (Python): threads={threads} batch={batch} images/s={rate:9.1f} "
          f"images per cpu-second={per_cpu:.0f}")


if __name__ == "__main__":
    main()
