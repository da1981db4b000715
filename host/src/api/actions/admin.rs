//! Arca's own administration actions (prefixed `Arca`; not part of the Alibaba API). They are
//! signed like any other call and allowed only to admin accounts (the first account, made at
//! first start, is one).

use serde::Serialize;

use super::{Action, Ctx, wrap};
use crate::api::params::Params;
use crate::error::ApiError;
use crate::ids::AccountId;
use crate::kms::accounts::NewAccessKey;
use crate::secret::SecretString;

/// A new AccessKey, the only reply that ever carries a secret.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccessKeyReply {
    account_id: String,
    access_key_id: String,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    access_key_secret: SecretString,
}

impl From<NewAccessKey> for AccessKeyReply {
    fn from(k: NewAccessKey) -> Self {
        Self {
            account_id: k.account.to_string(),
            access_key_id: k.access_key_id.to_string(),
            access_key_secret: k.secret,
        }
    }
}

/// `ArcaCreateAccount`: a new account and its first AccessKey.
#[derive(Debug)]
pub(crate) struct ArcaCreateAccount;

impl Action for ArcaCreateAccount {
    const NAME: &'static str = "ArcaCreateAccount";
    type Response = AccessKeyReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<AccessKeyReply, ApiError> {
        Ok(ctx.kms.create_account(&ctx.caller).await?.into())
    }
}

/// `ArcaCreateAccessKey`: another AccessKey for an account.
#[derive(Debug)]
pub(crate) struct ArcaCreateAccessKey(AccountId);

impl Action for ArcaCreateAccessKey {
    const NAME: &'static str = "ArcaCreateAccessKey";
    type Response = AccessKeyReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required_as("AccountId")?))
    }

    fn resource(&self) -> Option<String> {
        Some(self.0.to_string())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<AccessKeyReply, ApiError> {
        Ok(ctx
            .kms
            .create_access_key(&ctx.caller, &self.0)
            .await?
            .into())
    }
}

/// `ArcaListAccounts`.
#[derive(Debug)]
pub(crate) struct ArcaListAccounts;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccountsReply {
    accounts: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AccountEntry {
    account_id: String,
    admin: bool,
    creation_date: String,
}

impl Action for ArcaListAccounts {
    const NAME: &'static str = "ArcaListAccounts";
    type Response = AccountsReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<AccountsReply, ApiError> {
        let entries: Vec<AccountEntry> = ctx
            .kms
            .list_accounts(&ctx.caller)?
            .into_iter()
            .map(|a| AccountEntry {
                account_id: a.account_id.to_string(),
                admin: a.admin,
                creation_date: super::keys::date(a.created),
            })
            .collect();
        Ok(AccountsReply {
            accounts: wrap("Account", entries),
        })
    }
}

/// `ArcaBackup`: a consistent snapshot of the store, sealed under the root key, base64.
#[derive(Debug)]
pub(crate) struct ArcaBackup;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BackupReply {
    backup: String,
}

impl Action for ArcaBackup {
    const NAME: &'static str = "ArcaBackup";
    type Response = BackupReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<BackupReply, ApiError> {
        use base64::Engine;
        let bytes = ctx.kms.backup(&ctx.caller).await?;
        Ok(BackupReply {
            backup: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }
}

/// Plugin administration is for admins only.
fn require_admin(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    if ctx.caller.admin {
        Ok(())
    } else {
        Err(ApiError::NoPermission)
    }
}

/// `ArcaListPlugins`: every plugin in the plugins directory, loaded or failed, with counters.
#[derive(Debug)]
pub(crate) struct ArcaListPlugins;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PluginsReply {
    plugins_dir: Option<String>,
    plugins: Vec<crate::plugin::PluginSummary>,
}

impl Action for ArcaListPlugins {
    const NAME: &'static str = "ArcaListPlugins";
    type Response = PluginsReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PluginsReply, ApiError> {
        require_admin(ctx)?;
        Ok(PluginsReply {
            plugins_dir: ctx.plugins.dir().map(|d| d.display().to_string()),
            plugins: ctx.plugins.list(),
        })
    }
}

/// `ArcaInspectPlugin`: one plugin in detail (imports, exports, grants, limits, cache).
#[derive(Debug)]
pub(crate) struct ArcaInspectPlugin(String);

impl Action for ArcaInspectPlugin {
    const NAME: &'static str = "ArcaInspectPlugin";
    type Response = crate::plugin::PluginDetail;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required("Name")?.to_string()))
    }

    fn resource(&self) -> Option<String> {
        Some(format!("plugin/{}", self.0))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<crate::plugin::PluginDetail, ApiError> {
        require_admin(ctx)?;
        ctx.plugins
            .inspect(&self.0)
            .ok_or(ApiError::ResourceNotFound)
    }
}

/// `ArcaReloadPlugins`: reloads the plugins directory. A plugin that fails to load keeps its
/// previous version serving.
#[derive(Debug)]
pub(crate) struct ArcaReloadPlugins;

impl Action for ArcaReloadPlugins {
    const NAME: &'static str = "ArcaReloadPlugins";
    type Response = crate::plugin::LoadReport;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<crate::plugin::LoadReport, ApiError> {
        require_admin(ctx)?;
        Ok(ctx.plugins.load().await)
    }
}
