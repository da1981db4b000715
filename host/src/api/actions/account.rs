//! Region and account status.

use serde::Serialize;

use super::{Action, Ctx, wrap};
use crate::api::params::Params;
use crate::error::ApiError;

/// `DescribeRegions`: the one region this server serves.
#[derive(Debug)]
pub(crate) struct DescribeRegions;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RegionsReply {
    regions: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Region {
    region_id: String,
}

impl Action for DescribeRegions {
    const NAME: &'static str = "DescribeRegions";
    type Response = RegionsReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<RegionsReply, ApiError> {
        let region = Region {
            region_id: ctx.kms.region().to_owned(),
        };
        Ok(RegionsReply {
            regions: wrap("Region", vec![region]),
        })
    }
}

/// `DescribeAccountKmsStatus`: every authenticated account has KMS enabled.
#[derive(Debug)]
pub(crate) struct DescribeAccountKmsStatus;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StatusReply {
    account_status: &'static str,
}

impl Action for DescribeAccountKmsStatus {
    const NAME: &'static str = "DescribeAccountKmsStatus";
    type Response = StatusReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, _: &Ctx<'_>) -> Result<StatusReply, ApiError> {
        Ok(StatusReply {
            account_status: "Enabled",
        })
    }
}
