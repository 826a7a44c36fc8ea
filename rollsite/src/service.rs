//! The gRPC services as EggRoll defines them: `DataTransferService` and `RouteService`.

use crate::forward::HOPS_HEADER;
use crate::peer::Peer;
use crate::route::Hop;
use crate::site::Site;
use eggroll_proto::core_meta::Endpoint;
use eggroll_proto::proxy::data_transfer_service_server::DataTransferService;
use eggroll_proto::proxy::route_service_server::RouteService;
use eggroll_proto::proxy::{Metadata, Packet, PollingFrame, Topic};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The services on one listener (plaintext or mutual TLS).
#[derive(Clone)]
pub struct Service {
    site: Arc<Site>,
    secure: bool,
}

impl Service {
    /// Services over `site`; `secure` says whether the listener is the TLS one.
    pub fn new(site: Arc<Site>, secure: bool) -> Self {
        Self { site, secure }
    }

    fn peer<T>(&self, req: &Request<T>) -> Peer {
        let hops = req
            .metadata()
            .get(HOPS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Peer {
            addr: req.remote_addr(),
            secure: self.secure,
            hops,
            trusted: false,
        }
    }
}

#[tonic::async_trait]
impl DataTransferService for Service {
    async fn push(&self, req: Request<Streaming<Packet>>) -> Result<Response<Metadata>, Status> {
        let peer = self.peer(&req);
        let ack = self.site.push(req.into_inner(), peer).await?;
        Ok(Response::new(ack))
    }

    type pullStream = ReceiverStream<Result<Packet, Status>>;

    async fn pull(&self, req: Request<Metadata>) -> Result<Response<Self::pullStream>, Status> {
        let peer = self.peer(&req);
        Ok(Response::new(self.site.pull(req.into_inner(), peer).await?))
    }

    async fn unary_call(&self, req: Request<Packet>) -> Result<Response<Packet>, Status> {
        let peer = self.peer(&req);
        Ok(Response::new(
            self.site.unary(req.into_inner(), peer).await?,
        ))
    }

    type pollingStream = ReceiverStream<Result<PollingFrame, Status>>;

    async fn polling(
        &self,
        req: Request<Streaming<PollingFrame>>,
    ) -> Result<Response<Self::pollingStream>, Status> {
        let peer = self.peer(&req);
        let out = self
            .site
            .hub
            .accept(
                &self.site.routes.table(),
                std::time::Duration::from_secs(self.site.config.polling_idle_s.max(1)),
                req.into_inner(),
                peer,
            )
            .await?;
        Ok(Response::new(out))
    }
}

#[tonic::async_trait]
impl RouteService for Service {
    async fn query(&self, req: Request<Topic>) -> Result<Response<Endpoint>, Status> {
        let peer = self.peer(&req);
        self.site.check_local_client(&peer, "route queries")?;
        let t = req.into_inner();
        let role = if t.role.is_empty() {
            "default"
        } else {
            &t.role
        };
        let hop = self
            .site
            .routes
            .table()
            .resolve(&self.site.party_id, &t.party_id, role)?;
        let ep = match hop {
            Hop::Local => Endpoint {
                ip: self.site.config.host.clone(),
                port: self
                    .site
                    .listen
                    .get()
                    .and_then(|l| l.first())
                    .map(|a| a.port() as i32)
                    .unwrap_or(self.site.config.port as i32),
                hostname: String::new(),
            },
            Hop::Remote(r) => Endpoint {
                ip: r.ip,
                port: r.port as i32,
                hostname: r.hostname.unwrap_or_default(),
            },
            Hop::Polling(_) => Endpoint {
                ip: String::new(),
                port: -1,
                hostname: String::new(),
            },
        };
        Ok(Response::new(ep))
    }
}
