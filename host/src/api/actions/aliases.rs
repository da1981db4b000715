//! Alias actions.

use serde::Serialize;

use super::keys::Empty;
use super::{Action, Ctx, wrap};
use crate::api::params::{Page, Params};
use crate::error::ApiError;
use crate::ids::{AliasName, KeyRef, alias_arn};
use crate::kms::model::AliasRecord;

fn alias_param(p: &Params) -> Result<AliasName, ApiError> {
    p.required_as("AliasName")
}

/// An action that points `AliasName` at `KeyId` through one `Kms` method.
macro_rules! alias_target_action {
    ($(#[$doc:meta])* $name:ident => $method:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name {
            alias: AliasName,
            key: KeyRef,
        }

        impl Action for $name {
            const NAME: &'static str = stringify!($name);
            type Response = Empty;

            fn parse(p: &Params) -> Result<Self, ApiError> {
                Ok(Self { alias: alias_param(p)?, key: p.required_as("KeyId")? })
            }

            fn resource(&self) -> Option<String> {
                Some(self.key.to_string())
            }


            fn key_refs(&mut self) -> Vec<&mut KeyRef> {

                vec![&mut self.key]

            }

            async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
                ctx.kms.$method(&ctx.caller, &self.alias, &self.key).await?;
                Ok(Empty {})
            }
        }
    };
}

alias_target_action!(
    /// `CreateAlias`.
    CreateAlias => create_alias
);
alias_target_action!(
    /// `UpdateAlias`: re-points an existing alias.
    UpdateAlias => update_alias
);

/// `DeleteAlias`.
#[derive(Debug)]
pub(crate) struct DeleteAlias(AliasName);

impl Action for DeleteAlias {
    const NAME: &'static str = "DeleteAlias";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(alias_param(p)?))
    }

    fn resource(&self) -> Option<String> {
        Some(self.0.to_string())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms.delete_alias(&ctx.caller, &self.0).await?;
        Ok(Empty {})
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AliasesReply {
    aliases: serde_json::Value,
    total_count: usize,
    page_number: u64,
    page_size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AliasEntry {
    alias_name: String,
    alias_arn: String,
    key_id: String,
}

fn aliases_reply(ctx: &Ctx<'_>, page: Page, all: Vec<AliasRecord>) -> AliasesReply {
    let total_count = all.len();
    let entries: Vec<AliasEntry> = page
        .slice(all)
        .into_iter()
        .map(|a| AliasEntry {
            alias_arn: alias_arn(ctx.kms.region(), &a.account_id, &a.alias),
            alias_name: a.alias.to_string(),
            key_id: a.key_id.to_string(),
        })
        .collect();
    AliasesReply {
        aliases: wrap("Alias", entries),
        total_count,
        page_number: page.number,
        page_size: page.size,
    }
}

/// `ListAliases`.
#[derive(Debug)]
pub(crate) struct ListAliases(Page);

impl Action for ListAliases {
    const NAME: &'static str = "ListAliases";
    type Response = AliasesReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(Page::parse(p)?))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<AliasesReply, ApiError> {
        let all = ctx.kms.list_aliases(&ctx.caller)?;
        Ok(aliases_reply(ctx, self.0, all))
    }
}

/// `ListAliasesByKeyId`.
#[derive(Debug)]
pub(crate) struct ListAliasesByKeyId {
    key: KeyRef,
    page: Page,
}

impl Action for ListAliasesByKeyId {
    const NAME: &'static str = "ListAliasesByKeyId";
    type Response = AliasesReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: p.required_as("KeyId")?,
            page: Page::parse(p)?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<AliasesReply, ApiError> {
        let all = ctx.kms.list_aliases_for(&ctx.caller, &self.key)?;
        Ok(aliases_reply(ctx, self.page, all))
    }
}
