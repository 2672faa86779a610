//! `custodian admin`: accounts and tokens. `create-client`, `create-user`, `grant`,
//! `revoke`, and `token`, which prints an access token for a client (for operators and
//! tests). Secrets and passwords come from standard input or the environment, never
//! from the command line (it shows in process lists and shell history).
//!
//! Also what `serve` needs to verify tokens: the server's issuer (its signing key from
//! the store or a file) and the external identity provider's keys.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use privacy::account::{Client, Target, User};
use privacy::disclosure::Recipient;
use privacy::keys::SigningKey;
use privacy::token::{ExternalIssuer, Grant, Issuer, Verifier};
use privacy::{Role, Scopes};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an OAuth client (client-credentials grant).
    CreateClient(CreateClientArgs),
    /// Create a local user account; the password is read from standard input or
    /// CUSTODIAN_PASSWORD.
    CreateUser(CreateUserArgs),
    /// Give a client or user more roles or scopes.
    Grant(GrantArgs),
    /// Take roles or scopes away from a client or user.
    Revoke(GrantArgs),
    /// Print an access token for a client (its allowed scopes, narrowed by --scope).
    Token(TokenArgs),
    /// Print a patient's accounting of disclosures (HIPAA 164.528), one JSON line per
    /// disclosure.
    Disclosures(DisclosuresArgs),
}

#[derive(Args)]
pub struct DatabaseArg {
    /// The database: sqlite:PATH or postgres://USER@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "CUSTODIAN_DATABASE",
        default_value = "sqlite:custodian-data"
    )]
    database: String,
}

#[derive(Args)]
pub struct CreateClientArgs {
    #[command(flatten)]
    database: DatabaseArg,
    /// The client id.
    #[arg(long)]
    id: String,
    /// A display name (defaults to the id).
    #[arg(long)]
    name: Option<String>,
    /// Its role (repeat for several): admin, him_manager, coder, roi_specialist,
    /// clinician, auditor, patient.
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// The scopes it may be granted, space-separated (e.g. "system/*.rs").
    #[arg(long)]
    scope: String,
    /// Tie its tokens to this Patient id (the `patient` launch context).
    #[arg(long)]
    patient: Option<String>,
    #[command(flatten)]
    recipient: RecipientArgs,
    /// Read its client secret from standard input.
    #[arg(long, group = "credential")]
    secret_stdin: bool,
    /// Generate a client secret and print it (once: only its hash is kept).
    #[arg(long, group = "credential")]
    generate_secret: bool,
    /// Its public keys, a JWK set file (private_key_jwt, RS384 or ES384).
    #[arg(long, group = "credential")]
    jwks: Option<PathBuf>,
}

#[derive(Args)]
pub struct CreateUserArgs {
    #[command(flatten)]
    database: DatabaseArg,
    #[arg(long)]
    username: String,
    /// Its role (repeat for several).
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// Scopes beyond what the roles imply, space-separated.
    #[arg(long, default_value = "")]
    scope: String,
    /// The user's own Patient id (for the patient role).
    #[arg(long)]
    patient: Option<String>,
    #[command(flatten)]
    recipient: RecipientArgs,
}

/// A party outside the organisation that a client or user acts for: what it reads is
/// recorded as disclosed to it.
#[derive(Args)]
pub struct RecipientArgs {
    /// Register it as a recipient outside the organisation, with this name.
    #[arg(long)]
    recipient_name: Option<String>,
    /// The recipient's address.
    #[arg(long, requires = "recipient_name")]
    recipient_address: Option<String>,
}

impl RecipientArgs {
    fn recipient(&self) -> Result<Option<Recipient>, String> {
        match &self.recipient_name {
            Some(name) => Recipient::new(name, self.recipient_address.as_deref().unwrap_or(""))
                .map(Some)
                .map_err(|error| error.to_string()),
            None => Ok(None),
        }
    }
}

#[derive(Args)]
pub struct DisclosuresArgs {
    #[command(flatten)]
    database: DatabaseArg,
    /// The Patient id.
    #[arg(long)]
    patient: String,
    /// The start of the period (a FHIR date or dateTime); defaults to six years ago.
    #[arg(long)]
    start: Option<String>,
    /// The end of the period (a FHIR date or dateTime, inclusive); defaults to now.
    #[arg(long)]
    end: Option<String>,
    /// List every recorded release, those the accounting leaves out (treatment,
    /// payment, operations, the patient's own requests) too.
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
pub struct GrantArgs {
    #[command(flatten)]
    database: DatabaseArg,
    /// The client to change.
    #[arg(long, group = "target", required = true)]
    client: Option<String>,
    /// The user to change.
    #[arg(long, group = "target", required = true)]
    user: Option<String>,
    /// A role (repeat for several).
    #[arg(long = "role")]
    roles: Vec<Role>,
    /// Scopes, space-separated.
    #[arg(long, default_value = "")]
    scope: String,
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    database: DatabaseArg,
    #[command(flatten)]
    issuer: IssuerArgs,
    /// The FHIR base URL of the server the token is for (its audience; the issuer is
    /// its origin).
    #[arg(
        long,
        env = "CUSTODIAN_BASE_URL",
        default_value = "http://127.0.0.1:8080/fhir"
    )]
    base_url: String,
    /// The client the token is for.
    #[arg(long)]
    client: String,
    /// The scopes wanted, space-separated; defaults to all the client may have.
    #[arg(long)]
    scope: Option<String>,
}

/// What makes the server's token issuer; `serve` takes the same options.
#[derive(Args, Clone)]
pub struct IssuerArgs {
    /// Access token lifetime, in seconds.
    #[arg(long, env = "CUSTODIAN_TOKEN_LIFETIME_S", default_value_t = 300)]
    pub token_lifetime_s: u64,
    /// The key to sign tokens with, a P-256 PKCS#8 PEM file; without it the server
    /// generates one at first start and keeps it in the database.
    #[arg(long, env = "CUSTODIAN_SIGNING_KEY_FILE")]
    pub signing_key: Option<PathBuf>,
}

/// An external identity provider whose tokens are accepted too.
#[derive(Args, Clone)]
pub struct ExternalArgs {
    /// Its issuer (`iss`).
    #[arg(long, env = "CUSTODIAN_EXTERNAL_ISSUER", requires = "external_jwks")]
    pub external_issuer: Option<String>,
    /// Its public keys: a JWK set file, or an http:// URL (read at start, and again
    /// every --external-jwks-refresh-s).
    #[arg(long, env = "CUSTODIAN_EXTERNAL_JWKS", requires = "external_issuer")]
    pub external_jwks: Option<String>,
    /// How often to read the external JWK set again, in seconds, so a key the
    /// provider rotates in is trusted without a restart (0: only at start).
    #[arg(long, env = "CUSTODIAN_EXTERNAL_JWKS_REFRESH_S", default_value_t = 300)]
    pub external_jwks_refresh_s: u64,
    /// The claim of its tokens that names the role(s).
    #[arg(long, env = "CUSTODIAN_EXTERNAL_ROLE_CLAIM", default_value = "roles")]
    pub external_role_claim: String,
}

pub fn run(command: AdminCommand) -> Result<(), String> {
    crate::runtime()?.block_on(async move {
        match command {
            AdminCommand::CreateClient(args) => create_client(args).await,
            AdminCommand::CreateUser(args) => create_user(args).await,
            AdminCommand::Grant(args) => change(args, true).await,
            AdminCommand::Revoke(args) => change(args, false).await,
            AdminCommand::Token(args) => token(args).await,
            AdminCommand::Disclosures(args) => disclosures(args).await,
        }
    })
}

async fn open(database: &DatabaseArg) -> Result<store::Store, String> {
    store::Store::connect(&database.database)
        .await
        .map_err(|error| error.to_string())
}

/// One line of standard input, without its line end.
fn read_secret(what: &str) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        eprintln!("{what}: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| format!("cannot read the {what}: {error}"))?;
    let secret = line.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(format!("no {what} on standard input"));
    }
    Ok(secret)
}

async fn create_client(args: CreateClientArgs) -> Result<(), String> {
    let store = open(&args.database).await?;
    let mut printed_secret = None;
    let (secret_hash, jwks) = if let Some(path) = &args.jwks {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let jwks = privacy::token::parse_jwks(&text).map_err(|error| error.to_string())?;
        (None, Some(jwks))
    } else {
        let secret = if args.generate_secret {
            let secret = privacy::password::generate_secret().map_err(|error| error.to_string())?;
            printed_secret = Some(secret.clone());
            secret
        } else if args.secret_stdin {
            read_secret("client secret")?
        } else {
            return Err(
                "give the client a credential: --secret-stdin, --generate-secret or --jwks FILE"
                    .into(),
            );
        };
        let hash = privacy::password::hash(&secret).map_err(|error| error.to_string())?;
        (Some(hash), None)
    };
    let client = Client {
        name: args.name.unwrap_or_else(|| args.id.clone()),
        id: args.id,
        roles: args.roles,
        scopes: args.scope,
        secret_hash,
        jwks,
        patient: args.patient,
        recipient: args.recipient.recipient()?,
    };
    privacy::account::create_client(&store, &client)
        .await
        .map_err(|error| error.to_string())?;
    eprintln!("created client {}", client.id);
    if let Some(secret) = printed_secret {
        // The only time it is shown: only its hash is kept.
        println!("{secret}");
    }
    Ok(())
}

async fn create_user(args: CreateUserArgs) -> Result<(), String> {
    let store = open(&args.database).await?;
    let password = match std::env::var("CUSTODIAN_PASSWORD") {
        Ok(password) if !password.is_empty() => password,
        _ => read_secret("password")?,
    };
    let password_hash = privacy::password::hash(&password).map_err(|error| error.to_string())?;
    let user = User {
        username: args.username,
        password_hash,
        roles: args.roles,
        scopes: args.scope,
        patient: args.patient,
        recipient: args.recipient.recipient()?,
    };
    privacy::account::create_user(&store, &user)
        .await
        .map_err(|error| error.to_string())?;
    eprintln!("created user {}", user.username);
    Ok(())
}

async fn disclosures(args: DisclosuresArgs) -> Result<(), String> {
    use privacy::disclosure::{MAX_ENTRIES, accounting, period};
    let store = open(&args.database).await?;
    let now = store::Instant::now();
    let (from, to) = period(args.start.as_deref(), args.end.as_deref(), now)
        .map_err(|error| error.to_string())?;
    let found = if args.all {
        store
            .disclosures(&args.patient, from, to, MAX_ENTRIES)
            .await
            .map_err(|error| error.to_string())?
    } else {
        accounting(&store, &args.patient, from, to, now)
            .await
            .map_err(|error| error.to_string())?
    };
    for disclosure in &found {
        let line = serde_json::json!({
            "date": disclosure.at.to_fhir(),
            "recipient": disclosure.recipient,
            "address": disclosure.address,
            "purpose": disclosure.purpose,
            "description": disclosure.description,
            "releasedBy": disclosure.principal,
            "request": disclosure.request,
        });
        println!("{line}");
    }
    eprintln!("{} disclosures of Patient/{}", found.len(), args.patient);
    Ok(())
}

async fn change(args: GrantArgs, add: bool) -> Result<(), String> {
    let store = open(&args.database).await?;
    let target = match (args.client, args.user) {
        (Some(client), _) => Target::Client(client),
        (None, Some(user)) => Target::User(user),
        (None, None) => return Err("name a --client or a --user".into()),
    };
    if args.roles.is_empty() && args.scope.trim().is_empty() {
        return Err("name a --role or a --scope".into());
    }
    privacy::account::change_grants(&store, &target, &args.roles, &args.scope, add)
        .await
        .map_err(|error| error.to_string())?;
    eprintln!("{}", if add { "granted" } else { "revoked" });
    Ok(())
}

async fn token(args: TokenArgs) -> Result<(), String> {
    let store = open(&args.database).await?;
    let issuer = issuer(&store, &args.base_url, &args.issuer).await?;
    let client = privacy::account::client(&store, &args.client)
        .await
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("no client {:?}", args.client))?;
    let allowed = Scopes::parse(&client.scopes);
    let scopes = match &args.scope {
        Some(requested) => {
            let requested = Scopes::parse_strict(requested)?;
            allowed.grant(&requested)
        }
        None => allowed,
    };
    if scopes.is_empty() {
        return Err("none of the requested scopes is allowed for this client".into());
    }
    let issued = issuer
        .issue(&Grant {
            subject: client.id.clone(),
            client_id: Some(client.id.clone()),
            user: None,
            roles: client.roles.clone(),
            scopes,
            patient: client.patient.clone(),
        })
        .map_err(|error| error.to_string())?;
    println!("{}", issued.access_token);
    Ok(())
}

/// The server's issuer for `base_url`: its key from `--signing-key`, or the store's.
pub async fn issuer(
    store: &store::Store,
    base_url: &str,
    args: &IssuerArgs,
) -> Result<Issuer, String> {
    let key = match &args.signing_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            SigningKey::from_pem(&pem).map_err(|error| error.to_string())?
        }
        None => SigningKey::load_or_create(store)
            .await
            .map_err(|error| error.to_string())?,
    };
    let base_url = base_url.trim_end_matches('/');
    let origin = base_url.strip_suffix("/fhir").unwrap_or(base_url);
    Ok(Issuer::new(
        origin.to_string(),
        base_url.to_string(),
        args.token_lifetime_s,
        key,
    ))
}

/// The verifier `serve` uses: its own issuer, and the external one if configured.
pub async fn verifier(
    store: &store::Store,
    base_url: &str,
    issuer_args: &IssuerArgs,
    external: &ExternalArgs,
) -> Result<Arc<Verifier>, String> {
    let own = issuer(store, base_url, issuer_args).await?;
    let mut externals = Vec::new();
    if let (Some(issuer), Some(source)) = (&external.external_issuer, &external.external_jwks) {
        let jwks = read_jwks(source).await?;
        let trusted = ExternalIssuer::new(
            issuer.clone(),
            base_url.trim_end_matches('/').to_string(),
            external.external_role_claim.clone(),
            &jwks,
        );
        if external.external_jwks_refresh_s > 0 {
            let every = std::time::Duration::from_secs(external.external_jwks_refresh_s);
            tokio::spawn(refresh_keys(trusted.clone(), source.clone(), every));
        }
        externals.push(trusted);
    }
    Ok(Arc::new(Verifier {
        own,
        external: externals,
    }))
}

/// An identity provider's JWK set, from a file or an http:// URL.
async fn read_jwks(source: &str) -> Result<privacy::token::JwkSet, String> {
    let text = if source.starts_with("http://") {
        fetch(source).await?
    } else {
        std::fs::read_to_string(source).map_err(|error| format!("cannot read {source}: {error}"))?
    };
    privacy::token::parse_jwks(&text).map_err(|error| format!("{source}: {error}"))
}

/// Reads the provider's JWK set again every `every` and trusts its keys from then on;
/// when the set cannot be read or has no usable key, the keys stay as they were.
async fn refresh_keys(trusted: ExternalIssuer, source: String, every: std::time::Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match read_jwks(&source).await {
            Ok(jwks) => {
                let keys = trusted.replace_keys(&jwks);
                tracing::debug!(issuer = %trusted.issuer, keys, "external JWK set read again");
            }
            Err(error) => tracing::warn!(
                issuer = %trusted.issuer,
                "cannot read the external JWK set again, keeping its keys: {error}"
            ),
        }
    }
}

/// GET an http:// URL's body (the identity provider's JWK set).
async fn fetch(url: &str) -> Result<String, String> {
    let (address, path) = crate::client::split_url(url)?;
    let mut connection = crate::client::Connection::open(&address).await?;
    let (status, body) = connection
        .request_with("GET", &path, None, &[("accept", "application/json")])
        .await
        .map_err(|error| format!("cannot fetch {url}: {error}"))?;
    if status != 200 {
        return Err(format!("fetching {url} answered {status}"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| format!("{url} is not UTF-8 text"))
}
