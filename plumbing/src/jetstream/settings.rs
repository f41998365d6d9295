//! NATS connection settings: credentials and TLS, read from `FOLDBOOK_NATS_*`
//! environment variables only (never the command line, so secrets stay out of
//! process lists and logs), and applied to the client's connect options.

use std::path::{Path, PathBuf};

/// Environment variables that configure the connection: credentials and TLS. Read
/// only from the environment (never the command line), in [`super::JetStream::connect`].
pub const ENV_USER: &str = "FOLDBOOK_NATS_USER";
pub const ENV_PASSWORD: &str = "FOLDBOOK_NATS_PASSWORD";
pub const ENV_TOKEN: &str = "FOLDBOOK_NATS_TOKEN";
pub const ENV_CREDS: &str = "FOLDBOOK_NATS_CREDS";
pub const ENV_CA: &str = "FOLDBOOK_NATS_CA";
pub const ENV_CERT: &str = "FOLDBOOK_NATS_CERT";
pub const ENV_KEY: &str = "FOLDBOOK_NATS_KEY";

/// How the client proves who it is; at most one way.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// A `.creds` file (JWT and NKey seed).
    Creds(PathBuf),
}

/// Never shows a password or token.
impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => write!(f, "None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user:?}, <hidden>)"),
            NatsAuth::Token(_) => write!(f, "Token(<hidden>)"),
            NatsAuth::Creds(path) => write!(f, "Creds({path:?})"),
        }
    }
}

/// TLS: required whenever any of its variables is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// Root certificates (PEM) the server's certificate must chain to; without it,
    /// the system's.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The connection settings the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsSettings {
    pub auth: NatsAuth,
    pub tls: Option<NatsTls>,
}

impl NatsSettings {
    /// Reads the `FOLDBOOK_NATS_*` variables through `var` (the process environment
    /// in use, a map in tests); an empty value counts as unset. Contradictory
    /// settings are an error naming the variables.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<NatsSettings, String> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut ways = Vec::new();
        let mut auth = NatsAuth::None;
        match (get(ENV_USER), get(ENV_PASSWORD)) {
            (Some(user), Some(password)) => {
                ways.push(format!("{ENV_USER}/{ENV_PASSWORD}"));
                auth = NatsAuth::UserPassword { user, password };
            }
            (Some(_), None) => return Err(format!("{ENV_USER} is set but {ENV_PASSWORD} is not")),
            (None, Some(_)) => return Err(format!("{ENV_PASSWORD} is set but {ENV_USER} is not")),
            (None, None) => {}
        }
        if let Some(token) = get(ENV_TOKEN) {
            ways.push(ENV_TOKEN.to_owned());
            auth = NatsAuth::Token(token);
        }
        if let Some(path) = get(ENV_CREDS) {
            ways.push(ENV_CREDS.to_owned());
            auth = NatsAuth::Creds(PathBuf::from(path));
        }
        if ways.len() > 1 {
            return Err(format!(
                "more than one NATS authentication is set ({}): set only one",
                ways.join(", ")
            ));
        }
        let client_cert = match (get(ENV_CERT), get(ENV_KEY)) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some(_), None) => return Err(format!("{ENV_CERT} is set but {ENV_KEY} is not")),
            (None, Some(_)) => return Err(format!("{ENV_KEY} is set but {ENV_CERT} is not")),
            (None, None) => None,
        };
        let ca = get(ENV_CA).map(PathBuf::from);
        let tls = (ca.is_some() || client_cert.is_some()).then_some(NatsTls { ca, client_cert });
        Ok(NatsSettings { auth, tls })
    }

    /// `options` with these settings; a file that is missing or does not parse is an
    /// error naming its variable and path.
    pub(crate) async fn apply(
        self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, String> {
        let must_exist = |var: &str, path: &Path| {
            if path.is_file() {
                Ok(())
            } else {
                Err(format!("{var}={}: no such file", path.display()))
            }
        };
        options = match self.auth {
            NatsAuth::None => options,
            NatsAuth::UserPassword { user, password } => options.user_and_password(user, password),
            NatsAuth::Token(token) => options.token(token),
            NatsAuth::Creds(path) => {
                must_exist(ENV_CREDS, &path)?;
                options.credentials_file(&path).await.map_err(|e| {
                    format!(
                        "{ENV_CREDS}={}: not a usable .creds file: {e}",
                        path.display()
                    )
                })?
            }
        };
        if let Some(tls) = self.tls {
            if let Some(ca) = tls.ca {
                must_exist(ENV_CA, &ca)?;
                options = options.add_root_certificates(ca);
            }
            if let Some((cert, key)) = tls.client_cert {
                must_exist(ENV_CERT, &cert)?;
                must_exist(ENV_KEY, &key)?;
                options = options.add_client_certificate(cert, key);
            }
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<NatsSettings, String> {
        NatsSettings::from_env(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn tls(ca: Option<&str>, client: Option<(&str, &str)>) -> Option<NatsTls> {
        Some(NatsTls {
            ca: ca.map(PathBuf::from),
            client_cert: client.map(|(c, k)| (PathBuf::from(c), PathBuf::from(k))),
        })
    }

    #[test]
    fn nothing_set_is_no_auth_and_no_tls() {
        assert_eq!(settings(&[]).unwrap(), NatsSettings::default());
        // Empty values count as unset.
        assert_eq!(
            settings(&[(ENV_USER, ""), (ENV_TOKEN, ""), (ENV_CA, "")]).unwrap(),
            NatsSettings::default()
        );
    }

    #[test]
    fn each_auth_alone_is_accepted() {
        let user = settings(&[(ENV_USER, "app"), (ENV_PASSWORD, "s3cret")]).unwrap();
        assert_eq!(
            user.auth,
            NatsAuth::UserPassword {
                user: "app".into(),
                password: "s3cret".into()
            }
        );
        assert_eq!(user.tls, None);
        let token = settings(&[(ENV_TOKEN, "t0ken")]).unwrap();
        assert_eq!(token.auth, NatsAuth::Token("t0ken".into()));
        let creds = settings(&[(ENV_CREDS, "/etc/app.creds")]).unwrap();
        assert_eq!(creds.auth, NatsAuth::Creds("/etc/app.creds".into()));
    }

    #[test]
    fn tls_settings_are_accepted_with_or_without_auth() {
        let ca = settings(&[(ENV_CA, "/ca.pem")]).unwrap();
        assert_eq!(ca.auth, NatsAuth::None);
        assert_eq!(ca.tls, tls(Some("/ca.pem"), None));
        let mutual = settings(&[
            (ENV_CA, "/ca.pem"),
            (ENV_CERT, "/c.pem"),
            (ENV_KEY, "/k.pem"),
            (ENV_TOKEN, "t"),
        ])
        .unwrap();
        assert_eq!(mutual.auth, NatsAuth::Token("t".into()));
        assert_eq!(mutual.tls, tls(Some("/ca.pem"), Some(("/c.pem", "/k.pem"))));
        // A client certificate with the system's roots.
        let client = settings(&[(ENV_CERT, "/c.pem"), (ENV_KEY, "/k.pem")]).unwrap();
        assert_eq!(client.tls, tls(None, Some(("/c.pem", "/k.pem"))));
    }

    #[test]
    fn half_a_pair_is_rejected_naming_the_missing_variable() {
        let cases = [
            (vec![(ENV_USER, "app")], ENV_PASSWORD),
            (vec![(ENV_USER, "app"), (ENV_PASSWORD, "")], ENV_PASSWORD),
            (vec![(ENV_PASSWORD, "s3cret")], ENV_USER),
            (vec![(ENV_CA, "/ca.pem"), (ENV_CERT, "/c.pem")], ENV_KEY),
            (vec![(ENV_KEY, "/k.pem")], ENV_CERT),
        ];
        for (vars, missing) in cases {
            let e = settings(&vars).unwrap_err();
            assert!(
                e.contains(&format!("but {missing} is not")),
                "{vars:?}: {e}"
            );
        }
    }

    #[test]
    fn more_than_one_auth_is_rejected() {
        let cases = [
            vec![
                (ENV_USER, "app"),
                (ENV_PASSWORD, "s3cret"),
                (ENV_TOKEN, "t"),
            ],
            vec![(ENV_TOKEN, "t"), (ENV_CREDS, "/app.creds")],
            vec![
                (ENV_USER, "app"),
                (ENV_PASSWORD, "p"),
                (ENV_CREDS, "/a.creds"),
            ],
        ];
        for vars in cases {
            let e = settings(&vars).unwrap_err();
            assert!(e.contains("more than one NATS authentication"), "{e}");
        }
    }

    #[test]
    fn secrets_never_show_in_errors_or_debug() {
        let e = settings(&[(ENV_PASSWORD, "s3cret"), (ENV_TOKEN, "t0ken")]).unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains("t0ken"), "{e}");
        let e = settings(&[
            (ENV_USER, "a"),
            (ENV_PASSWORD, "s3cret"),
            (ENV_TOKEN, "t0ken"),
        ])
        .unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains("t0ken"), "{e}");
        for vars in [
            vec![(ENV_USER, "app"), (ENV_PASSWORD, "s3cret")],
            vec![(ENV_TOKEN, "s3cret")],
        ] {
            let shown = format!("{:?}", settings(&vars).unwrap());
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_its_variable_and_path() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (var, vars) in [
            (ENV_CREDS, vec![(ENV_CREDS, "/nonexistent/app.creds")]),
            (ENV_CA, vec![(ENV_CA, "/nonexistent/ca.pem")]),
        ] {
            let s = settings(&vars).unwrap();
            let e = rt
                .block_on(s.apply(async_nats::ConnectOptions::new()))
                .err()
                .unwrap();
            assert!(e.starts_with(&format!("{var}=/nonexistent/")), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.creds");
        std::fs::write(&bad, "not a creds file").unwrap();
        let s = NatsSettings {
            auth: NatsAuth::Creds(bad),
            tls: None,
        };
        let e = rt
            .block_on(s.apply(async_nats::ConnectOptions::new()))
            .err()
            .unwrap();
        assert!(e.contains("not a usable .creds file"), "{e}");
    }
}
