//! Passphrases for the command line: from a named environment variable (for scripts) or typed
//! at a prompt with echo off. They are never printed and are wiped from memory when dropped.

use zeroize::Zeroizing;

/// Where a passphrase could not come from, and what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the environment variable {0} is not set or is not UTF-8; export it or leave the flag out to be asked"
    )]
    MissingEnv(String),
    #[error("the passphrase is empty; choose one of at least 8 characters")]
    Empty,
    #[error("the two passphrases differ; run the command again")]
    Mismatch,
    #[error(
        "cannot read a passphrase from the terminal ({0}); give it through an environment \
         variable with --passphrase-env VAR"
    )]
    Prompt(std::io::Error),
}

/// Reads the passphrase from `env` when given, else asks for it (twice when `confirm`).
pub fn passphrase(
    env: Option<&str>,
    prompt: &str,
    confirm: bool,
) -> Result<Zeroizing<String>, SecretError> {
    let value = match env {
        Some(var) => {
            Zeroizing::new(std::env::var(var).map_err(|_| SecretError::MissingEnv(var.to_owned()))?)
        }
        None => {
            let first =
                Zeroizing::new(rpassword::prompt_password(prompt).map_err(SecretError::Prompt)?);
            if confirm {
                let again = Zeroizing::new(
                    rpassword::prompt_password("again: ").map_err(SecretError::Prompt)?,
                );
                if *again != *first {
                    return Err(SecretError::Mismatch);
                }
            }
            first
        }
    };
    if value.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(value)
}
