//! The form body: strict `application/x-www-form-urlencoded`, bounded, no duplicates.

use std::fmt;

use crate::core::query::{hex_digit, split_pair};

use super::{MAX_BODY, MAX_FIELD};

/// A field of the login form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `username`.
    Username,
    /// `password`.
    Password,
    /// `back`: where to go after the login.
    Back,
}

impl Field {
    /// The form field name.
    pub fn name(self) -> &'static str {
        match self {
            Field::Username => "username",
            Field::Password => "password",
            Field::Back => "back",
        }
    }

    fn from_name(name: &[u8]) -> Option<Field> {
        match name {
            b"username" => Some(Field::Username),
            b"password" => Some(Field::Password),
            b"back" => Some(Field::Back),
            _ => None,
        }
    }
}

/// Why a login form body was refused. Never carries field values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormError {
    /// More than [`MAX_BODY`] bytes.
    TooLarge,
    /// A field longer than [`MAX_FIELD`] bytes once decoded.
    FieldTooLong(Field),
    /// A field sent more than once: which one counts would be a guess.
    Duplicate(Field),
    /// `username` or `password` absent.
    Missing(Field),
    /// A `%` not followed by two hex digits.
    BadEncoding,
    /// The user name is not UTF-8.
    BadUsername,
}

impl FormError {
    /// Stable snake_case code for logs.
    pub fn code(self) -> &'static str {
        match self {
            FormError::TooLarge => "form_too_large",
            FormError::FieldTooLong(_) => "form_field_too_long",
            FormError::Duplicate(_) => "form_duplicate_field",
            FormError::Missing(_) => "form_missing_field",
            FormError::BadEncoding => "form_bad_encoding",
            FormError::BadUsername => "form_bad_username",
        }
    }
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::TooLarge => write!(f, "login form larger than {MAX_BODY} bytes"),
            FormError::FieldTooLong(field) => write!(
                f,
                "login form field `{}` longer than {MAX_FIELD} bytes",
                field.name()
            ),
            FormError::Duplicate(field) => {
                write!(f, "login form field `{}` sent twice", field.name())
            }
            FormError::Missing(field) => {
                write!(f, "login form field `{}` missing", field.name())
            }
            FormError::BadEncoding => f.write_str("login form has a malformed %-escape"),
            FormError::BadUsername => f.write_str("login form user name is not UTF-8"),
        }
    }
}

impl std::error::Error for FormError {}

/// A parsed login form. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginForm {
    /// The user name as sent.
    pub username: String,
    /// Bytes as sent (bcrypt hashes bytes; browsers send UTF-8).
    pub password: Vec<u8>,
    /// The `back` field, when present and UTF-8 (a non-UTF-8 one is dropped: it would become
    /// `/` anyway). Not checked here: pass it through [`safe_back`](super::safe_back) (or [`redirect`](super::redirect)).
    pub back: Option<String>,
}

impl fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("back", &self.back)
            .finish()
    }
}

impl Drop for LoginForm {
    /// Wipes the password from memory, spare capacity included, as
    /// [`token::Secret`](crate::core::token::Secret) does.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, `%XX`
/// a byte; a malformed escape is an error (browsers never send one).
pub(super) fn form_decode(raw: &[u8]) -> Result<Vec<u8>, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().copied().and_then(hex_digit);
                let lo = bytes.next().copied().and_then(hex_digit);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h << 4) | l),
                    _ => return Err(FormError::BadEncoding),
                }
            }
            _ => out.push(b),
        }
    }
    Ok(out)
}

/// Parses an `application/x-www-form-urlencoded` login form: fields `username`, `password` and
/// optionally `back`; other fields are ignored (but must be well-encoded). Names are compared
/// after decoding. Never panics.
pub fn parse_form(body: &[u8]) -> Result<LoginForm, FormError> {
    if body.len() > MAX_BODY {
        return Err(FormError::TooLarge);
    }
    let (mut username, mut password, mut back) = (None, None, None);
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = split_pair(pair);
        let name = form_decode(name)?;
        let value = form_decode(value)?;
        let Some(field) = Field::from_name(&name) else {
            continue;
        };
        if value.len() > MAX_FIELD {
            return Err(FormError::FieldTooLong(field));
        }
        let slot: &mut Option<Vec<u8>> = match field {
            Field::Username => &mut username,
            Field::Password => &mut password,
            Field::Back => &mut back,
        };
        if slot.is_some() {
            return Err(FormError::Duplicate(field));
        }
        *slot = Some(value);
    }
    let username = username.ok_or(FormError::Missing(Field::Username))?;
    let password = password.ok_or(FormError::Missing(Field::Password))?;
    let username = String::from_utf8(username).map_err(|_| FormError::BadUsername)?;
    let back = back.and_then(|b| String::from_utf8(b).ok());
    Ok(LoginForm {
        username,
        password,
        back,
    })
}

/// True if a `Content-Type` value is `application/x-www-form-urlencoded` (any letter case,
/// parameters such as `; charset=UTF-8` allowed).
pub fn is_form_content_type(value: &[u8]) -> bool {
    let media = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}
