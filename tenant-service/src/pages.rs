//! The few HTML pages the tenant serves: its console (sign-in form), the invitation form
//! and the answers to both. Every value is escaped; no page ever holds a password, token or
//! invitation code.

/// A whole page with `title` and an already-escaped `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title></head>\
         <body style=\"font-family: sans-serif; line-height: 1.5; max-width: 40em; margin: 2em auto\">\n{body}\n</body></html>\n",
        escape(title)
    )
}

/// The console: who is signed in, or the sign-in form.
pub fn console(tenant_name: &str, host: &str, signed_in_as: Option<&str>) -> String {
    let name = escape(tenant_name);
    let body = match signed_in_as {
        Some(email) => format!(
            "<h1>{name} is up</h1><p>Served at {host}.</p><p>Signed in as <strong>{}</strong>.</p>",
            escape(email),
            host = escape(host),
        ),
        None => format!(
            "<h1>{name} is up</h1><p>Served at {host}.</p>\
             <h2>Sign in</h2>\
             <form method=\"post\" action=\"/signin\">\
             <p><label>Email <input type=\"email\" name=\"email\" required autocomplete=\"username\"></label></p>\
             <p><label>Password <input type=\"password\" name=\"password\" required autocomplete=\"current-password\"></label></p>\
             <p><button type=\"submit\">Sign in</button></p></form>",
            host = escape(host),
        ),
    };
    page(&format!("{tenant_name} console"), &body)
}

/// The invitation form: the invited email and a new password. It posts back to its own URL.
pub fn invitation_form(tenant_name: &str, email: &str, min_chars: usize) -> String {
    let body = format!(
        "<h1>Join {name}</h1>\
         <p>You are invited as the administrator <strong>{email}</strong>. Choose a password \
         (at least {min_chars} characters) to finish setting up your account.</p>\
         <form method=\"post\">\
         <p><label>Password <input type=\"password\" name=\"password\" required minlength=\"{min_chars}\" autocomplete=\"new-password\"></label></p>\
         <p><button type=\"submit\">Accept the invitation</button></p></form>",
        name = escape(tenant_name),
        email = escape(email),
    );
    page(&format!("Join {tenant_name}"), &body)
}

/// A short page with a heading and one paragraph, e.g. an error or a confirmation.
pub fn message(title: &str, text: &str, link: Option<(&str, &str)>) -> String {
    let link = link
        .map(|(href, label)| format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(label)))
        .unwrap_or_default();
    page(
        title,
        &format!("<h1>{}</h1><p>{}</p>{link}", escape(title), escape(text)),
    )
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
        assert_eq!(escape("production-eu"), "production-eu");
        let form = invitation_form("<x>", "a&b@example.com", 12);
        assert!(form.contains("&lt;x&gt;") && form.contains("a&amp;b@example.com"));
        assert!(!form.contains("<x>"));
    }
}
