//! The gRPC form of `serve_bench load`: CLIENTS tasks, each on its own
//! HTTP/2 connection (tonic's generated client), sending UINT8
//! `raw_input_contents` requests without pause and asking for the label.

use std::time::{Duration, Instant};

use trainerd::serve::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use trainerd::serve::grpc::pb::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use trainerd::serve::grpc::pb::ModelInferRequest;

fn request(images: usize) -> ModelInferRequest {
    let pixels: Vec<u8> = (0..images * 784).map(|i| (i * 7 % 256) as u8).collect();
    ModelInferRequest {
        model_name: "trainerd".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "UINT8".into(),
            shape: vec![images as i64, 784],
            ..Default::default()
        }],
        outputs: vec![InferRequestedOutputTensor {
            name: "label".into(),
            ..Default::default()
        }],
        raw_input_contents: vec![pixels.into()],
        ..Default::default()
    }
}

/// Each call's latency until `seconds` pass, and the failures.
pub fn load(addr: &str, clients: usize, images: usize, seconds: usize) -> (Vec<Duration>, usize) {
    // One thread drives every connection: the load generator's own CPU
    // comes out of the cores the server is measured on.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let url = format!("http://{addr}");
    rt.block_on(async {
        let end = Instant::now() + Duration::from_secs(seconds as u64);
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (url, req) = (url.clone(), request(images));
                tokio::spawn(async move {
                    let mut client = GrpcInferenceServiceClient::connect(url)
                        .await
                        .expect("connect");
                    let (mut lat, mut failed) = (Vec::new(), 0usize);
                    while Instant::now() < end {
                        let t = Instant::now();
                        match client.model_infer(req.clone()).await {
                            Ok(_) => lat.push(t.elapsed()),
                            Err(_) => failed += 1,
                        }
                    }
                    (lat, failed)
                })
            })
            .collect();
        let (mut lat, mut failed) = (Vec::new(), 0);
        for t in tasks {
            let (l, f) = t.await.expect("client task");
            lat.extend(l);
            failed += f;
        }
        (lat, failed)
    })
}
