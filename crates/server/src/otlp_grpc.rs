//! OTLP over gRPC (port 4317): `MetricsService/Export`. Tenancy comes from the `x-scope-orgid`
//! metadata, decided by the same rules as HTTP.

use proto::otlp::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use proto::otlp::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::tenancy::Tenancy;

/// The gRPC metrics receiver.
pub struct Metrics {
    /// The metrics API state (store, limits, config).
    pub api: metrics::api::MetricsApi,
    /// Tenancy rules.
    pub tenancy: Tenancy,
}

fn to_status(e: &metrics::Error) -> Status {
    match e.status() {
        400 | 413 | 415 => Status::invalid_argument(e.to_string()),
        429 => Status::resource_exhausted(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl MetricsService for Metrics {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let headers = req.metadata().clone().into_headers();
        let set = self
            .tenancy
            .resolve(&headers, true)
            .map_err(|r| match r.status.as_u16() {
                401 => Status::unauthenticated(r.message),
                403 => Status::permission_denied(r.message),
                _ => Status::invalid_argument(r.message),
            })?;
        let tenant = set
            .single_tenant()
            .expect("write sets have one tenant")
            .clone();
        let limits = self.api.overrides.get(&tenant);
        let decoded = metrics::ingest::otlp::translate(
            req.into_inner(),
            &self.api.cfg,
            &limits,
            common::time::now_ms(),
        );
        let resp = metrics::api::ingest_otlp(&self.api, &tenant, decoded)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(resp))
    }
}

/// The tonic service, with gzip accepted and the message size capped.
pub fn service(m: Metrics, max_message: usize) -> MetricsServiceServer<Metrics> {
    MetricsServiceServer::new(m)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message)
}
