//! The Sieve gRPC service (proto `mailbox.v1.Sieve`): every call resolves
//! its session token to the one account it may touch, as Mailbox calls
//! do, then runs the Store's Sieve operations (`store/sieve.rs`).

use mailbox_api::pb::{self, sieve_server};
use tonic::{Request, Response, Status};

use crate::store::{AccountId, Store};

/// The Sieve service over a [`Store`].
pub struct SieveSvc {
    pub(crate) store: Store,
}

impl SieveSvc {
    async fn account<T>(&self, req: &Request<T>) -> Result<AccountId, Status> {
        Ok(self
            .store
            .resolve_session(crate::server::bearer(req)?)
            .await?)
    }
}

#[tonic::async_trait]
impl sieve_server::Sieve for SieveSvc {
    async fn put_script(
        &self,
        req: Request<pb::PutScriptRequest>,
    ) -> Result<Response<pb::PutScriptResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(
            self.store.put_script(account, &r.name, &r.content).await?,
        ))
    }

    async fn get_script(
        &self,
        req: Request<pb::GetScriptRequest>,
    ) -> Result<Response<pb::GetScriptResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(
            self.store.get_script(account, &r.name).await?,
        ))
    }

    async fn list_scripts(
        &self,
        req: Request<pb::ListScriptsRequest>,
    ) -> Result<Response<pb::ListScriptsResponse>, Status> {
        let account = self.account(&req).await?;
        let scripts = self.store.list_scripts(account).await?;
        Ok(Response::new(pb::ListScriptsResponse { scripts }))
    }

    async fn set_active(
        &self,
        req: Request<pb::SetActiveRequest>,
    ) -> Result<Response<pb::SetActiveResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        self.store.set_active_script(account, &r.name).await?;
        Ok(Response::new(pb::SetActiveResponse {}))
    }

    async fn delete_script(
        &self,
        req: Request<pb::DeleteScriptRequest>,
    ) -> Result<Response<pb::DeleteScriptResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        self.store.delete_script(account, &r.name).await?;
        Ok(Response::new(pb::DeleteScriptResponse {}))
    }

    async fn rename_script(
        &self,
        req: Request<pb::RenameScriptRequest>,
    ) -> Result<Response<pb::RenameScriptResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        self.store
            .rename_script(account, &r.old_name, &r.new_name)
            .await?;
        Ok(Response::new(pb::RenameScriptResponse {}))
    }

    async fn have_space(
        &self,
        req: Request<pb::HaveSpaceRequest>,
    ) -> Result<Response<pb::HaveSpaceResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(
            self.store.have_space(account, &r.name, r.size).await?,
        ))
    }

    async fn check_script(
        &self,
        req: Request<pb::CheckScriptRequest>,
    ) -> Result<Response<pb::CheckScriptResponse>, Status> {
        // Only a logged-in session may use the interpreter.
        self.account(&req).await?;
        Ok(Response::new(
            self.store.check_script(&req.into_inner().content),
        ))
    }

    async fn get_active_script(
        &self,
        req: Request<pb::GetActiveScriptRequest>,
    ) -> Result<Response<pb::GetActiveScriptResponse>, Status> {
        let account = self.account(&req).await?;
        Ok(Response::new(self.store.active_script(account).await?))
    }
}
