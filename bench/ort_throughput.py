"""onnxruntime's own throughput on a model.onnx, for bench/serve.sh to
compare `trainerd serve` with: batches of BATCH images (values in [0, 1])
in a loop, every graph optimisation on, inter-op 1, in one of two layouts
of the same THREADS:

- INSTANCES=1: one InferenceSession with THREADS intra-op threads;
- INSTANCES=k: k sessions of THREADS/k intra-op threads each, one Python
  thread driving each (`run` releases the GIL), as `trainerd serve` runs
  its instances (`--instances`, by default one single-threaded session per
  thread).

Also prints images per CPU-second of this process, to set beside the served
images per CPU-second of the server (bench/serve.sh), which leaves out the
load generator's share of the cores.

    python3 bench/ort_throughput.py MODEL_ONNX THREADS BATCH SECONDS [INSTANCES]
"""
import sys
import threading
import time

import numpy as np
import onnxruntime as ort


def session(model, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def main():
    model, threads, batch, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    instances = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    sessions = [session(model, max(threads // instances, 1)) for _ in range(instances)]
    inp = sessions[0].get_inputs()[0]
    shape = [batch] + [int(d) for d in inp.shape[1:]]
    per = int(np.prod(shape[1:]))
    x = (np.arange(batch * per) % 256).astype(np.float32).reshape(shape) / 255.0
    for s in sessions:
        s.run(None, {inp.name: x})
    done = [0] * instances
    start, cpu = time.perf_counter(), time.process_time()
    end = start + seconds

    def drive(i):
        while time.perf_counter() < end:
            sessions[i].run(None, {inp.name: x})
            done[i] += batch

    workers = [threading.Thread(target=drive, args=(i,)) for i in range(instances)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rate = sum(done) / (time.perf_counter() - start)
    per_cpu = sum(done) / max(time.process_time() - cpu, 1e-9)
    layout = f"{instances}x{max(threads // instances, 1)}"
    print(f"onnxruntime {ort.__version__} (Python): threads={threads} sessions x threads={layout:<4} "
          f"batch={batch} images/s={rate:9.1f} images per cpu-second={per_cpu:.0f}")


if __name__ == "__main__":
    main()
