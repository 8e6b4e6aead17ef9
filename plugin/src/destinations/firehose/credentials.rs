//! AWS credentials for the `firehose` destination.
//!
//! aws-config's default chain — environment, shared profile (with `credential_process` and
//! SSO), IRSA web identity (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`), the ECS task role,
//! EKS Pod Identity, IMDS — with two additions of Fluent Bit's core output: `sts_endpoint`
//! (the default chain cannot point its web-identity STS call elsewhere, so with it set the
//! web-identity exchange is done here first) and `role_arn` (+ `external_id`), assumed on top.

use std::path::PathBuf;
use std::time::SystemTime;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider, future};

use fanout_core::destinations::firehose::config::FirehoseConfig;

/// Session name of the roles this plugin assumes (visible in CloudTrail).
const SESSION_NAME: &str = "flb-fanout";

pub async fn provider(config: &FirehoseConfig) -> SharedCredentialsProvider {
    let region = Region::new(config.region.clone());
    let mut chain = DefaultCredentialsChain::builder().region(region.clone());
    if let Some(profile) = &config.profile {
        chain = chain.profile_name(profile);
    }
    let mut credentials = SharedCredentialsProvider::new(chain.build().await);
    if let Some(sts_endpoint) = &config.sts_endpoint {
        if let Some(web_identity) = WebIdentity::from_env(sts_endpoint, region.clone()).await {
            credentials = SharedCredentialsProvider::new(
                CredentialsProviderChain::first_try("WebIdentityToken", web_identity)
                    .or_else("DefaultChain", credentials),
            );
        }
    }
    if let Some(role_arn) = &config.role_arn {
        let mut sts = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials.clone());
        if let Some(endpoint) = &config.sts_endpoint {
            sts = sts.endpoint_url(endpoint);
        }
        let mut assume = AssumeRoleProvider::builder(role_arn)
            .session_name(SESSION_NAME)
            .configure(&sts.load().await);
        if let Some(external_id) = &config.external_id {
            assume = assume.external_id(external_id);
        }
        credentials = SharedCredentialsProvider::new(assume.build_from_provider(credentials).await);
    }
    credentials
}

/// IRSA's token exchange against a chosen STS endpoint.
#[derive(Debug)]
struct WebIdentity {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    token_file: PathBuf,
    session_name: String,
}

impl WebIdentity {
    async fn from_env(sts_endpoint: &str, region: Region) -> Option<WebIdentity> {
        let role_arn = std::env::var("AWS_ROLE_ARN")
            .ok()
            .filter(|v| !v.is_empty())?;
        let token_file = std::env::var("AWS_WEB_IDENTITY_TOKEN_FILE")
            .ok()
            .filter(|v| !v.is_empty())?;
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .endpoint_url(sts_endpoint)
            .no_credentials()
            .load()
            .await;
        Some(WebIdentity {
            sts: aws_sdk_sts::Client::new(&sdk),
            role_arn,
            token_file: PathBuf::from(token_file),
            session_name: std::env::var("AWS_ROLE_SESSION_NAME")
                .unwrap_or_else(|_| SESSION_NAME.into()),
        })
    }

    async fn load(&self) -> provider::Result {
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            CredentialsError::provider_error(format!(
                "cannot read {}: {e}",
                self.token_file.display()
            ))
        })?;
        let response = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(token.trim())
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(
                    aws_sdk_sts::error::DisplayErrorContext(e).to_string(),
                )
            })?;
        let c = response
            .credentials
            .ok_or_else(|| CredentialsError::provider_error("STS returned no credentials"))?;
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            SystemTime::try_from(c.expiration).ok(),
            "WebIdentityToken",
        ))
    }
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}
