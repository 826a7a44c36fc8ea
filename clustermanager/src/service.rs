//! The gRPC face of the cluster manager: each call hands over to [`Cluster`].

use crate::cluster::Cluster;
use eggroll_proto::meta::cluster_manager_server::ClusterManager;
use eggroll_proto::meta::{
    Ack, CreateSessionRequest, NodeAck, NodeHeartbeat, NodeList, NodeRegistration, ProcessorExited,
    ProcessorReady, SessionId, SessionList, SessionMeta, Store, StoreList, StoreLocator,
    StoreQuery, StoreRequest,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The `ClusterManager` service.
pub struct ClusterService {
    /// The state it serves.
    pub cluster: Arc<Cluster>,
}

impl ClusterService {
    fn ack(&self, known: bool) -> Response<NodeAck> {
        let interval = (self.cluster.config.clustermanager.heartbeat_timeout_ms / 5).max(100);
        Response::new(NodeAck {
            known,
            heartbeat_interval_ms: interval,
        })
    }
}

fn session_id(req: Request<SessionId>) -> Result<String, Status> {
    let id = req.into_inner().id;
    if id.is_empty() {
        return Err(Status::invalid_argument(
            "cluster manager: the request names no session id",
        ));
    }
    Ok(id)
}

#[tonic::async_trait]
impl ClusterManager for ClusterService {
    async fn register_node(
        &self,
        req: Request<NodeRegistration>,
    ) -> Result<Response<NodeAck>, Status> {
        let r = req.into_inner();
        if r.node_id == 0 || r.host.is_empty() || r.port == 0 {
            return Err(Status::invalid_argument(
                "cluster manager: a registration needs a node id, host and port",
            ));
        }
        self.cluster.register_node(r).await?;
        Ok(self.ack(true))
    }

    async fn heartbeat(&self, req: Request<NodeHeartbeat>) -> Result<Response<NodeAck>, Status> {
        let known = self.cluster.nodes().heartbeat(req.into_inner());
        Ok(self.ack(known))
    }

    async fn list_nodes(&self, _: Request<Ack>) -> Result<Response<NodeList>, Status> {
        Ok(Response::new(NodeList {
            nodes: self.cluster.nodes().list(),
        }))
    }

    async fn report_ready(&self, req: Request<ProcessorReady>) -> Result<Response<Ack>, Status> {
        self.cluster.report_ready(req.into_inner()).await?;
        Ok(Response::new(Ack {}))
    }

    async fn report_exit(&self, req: Request<ProcessorExited>) -> Result<Response<Ack>, Status> {
        self.cluster.report_exit(req.into_inner()).await?;
        Ok(Response::new(Ack {}))
    }

    async fn create_session(
        &self,
        req: Request<CreateSessionRequest>,
    ) -> Result<Response<SessionMeta>, Status> {
        Ok(Response::new(
            self.cluster.create_session(req.into_inner()).await?,
        ))
    }

    async fn get_session(&self, req: Request<SessionId>) -> Result<Response<SessionMeta>, Status> {
        Ok(Response::new(self.cluster.session(&session_id(req)?)?))
    }

    async fn list_sessions(&self, _: Request<Ack>) -> Result<Response<SessionList>, Status> {
        Ok(Response::new(SessionList {
            sessions: self.cluster.list_sessions(),
        }))
    }

    async fn stop_session(&self, req: Request<SessionId>) -> Result<Response<SessionMeta>, Status> {
        Ok(Response::new(
            self.cluster.stop_session(&session_id(req)?, false).await?,
        ))
    }

    async fn kill_session(&self, req: Request<SessionId>) -> Result<Response<SessionMeta>, Status> {
        Ok(Response::new(
            self.cluster.stop_session(&session_id(req)?, true).await?,
        ))
    }

    async fn keep_alive(&self, req: Request<SessionId>) -> Result<Response<SessionMeta>, Status> {
        Ok(Response::new(self.cluster.keep_alive(&session_id(req)?)?))
    }

    async fn get_store(&self, req: Request<StoreRequest>) -> Result<Response<Store>, Status> {
        Ok(Response::new(
            self.cluster.get_store(req.into_inner()).await?,
        ))
    }

    async fn list_stores(&self, req: Request<StoreQuery>) -> Result<Response<StoreList>, Status> {
        let q = req.into_inner();
        Ok(Response::new(StoreList {
            stores: self.cluster.catalog().list(&q.namespace, &q.name)?,
        }))
    }

    async fn delete_store(&self, req: Request<StoreLocator>) -> Result<Response<Store>, Status> {
        Ok(Response::new(
            self.cluster.delete_store(&req.into_inner()).await?,
        ))
    }
}
