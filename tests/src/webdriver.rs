//! Just enough of the W3C WebDriver protocol (<https://www.w3.org/TR/webdriver2/>) to drive
//! chromedriver from the dashboard's browser test: a session, navigation, elements found by CSS,
//! their text and attributes, clicks, scripts and a screenshot. WebDriver is JSON over plain
//! HTTP, so this is a few requests with the HTTP client and JSON the tests already build, where a
//! full client library would add some fifty crates to every test build. Blocking: each call
//! waits for chromedriver's answer. Loopback only, like every test.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// The key under which WebDriver names an element in its answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session on a chromedriver at `driver`'s URL; ended when dropped.
#[derive(Debug)]
pub struct Session {
    agent: ureq::Agent,
    base: String,
}

/// An element on the page, as the session named it.
#[derive(Debug, Clone)]
pub struct Element(String);

/// What WebDriver answered instead of a value: its error code and message.
#[derive(Debug)]
pub struct WebDriverError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

impl std::error::Error for WebDriverError {}

type Result<T> = std::result::Result<T, WebDriverError>;

impl Session {
    /// Opens a session with `capabilities` (W3C `alwaysMatch`) on the chromedriver at `driver`.
    pub fn start(driver: &str, capabilities: Value) -> Result<Session> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let answer = send(&agent, "POST", &format!("{driver}/session"), Some(body))?;
        let id = answer["sessionId"].as_str().ok_or_else(|| WebDriverError {
            status: 200,
            error: "bad answer".into(),
            message: format!("no sessionId in {answer}"),
        })?;
        Ok(Session {
            agent,
            base: format!("{driver}/session/{id}"),
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        send(&self.agent, method, &format!("{}{path}", self.base), body)
    }

    /// Loads `url` and waits for the page to load.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .map(drop)
    }

    /// The page's current URL.
    pub fn current_url(&self) -> Result<String> {
        let value = self.call("GET", "/url", None)?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// The first element matching `css`; an error (`no such element`) when none does.
    pub fn find(&self, css: &str) -> Result<Element> {
        let value = self.call("POST", "/element", Some(locator(css)))?;
        element(&value)
    }

    /// Every element matching `css`, in document order.
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let value = self.call("POST", "/elements", Some(locator(css)))?;
        value
            .as_array()
            .map(|all| all.iter().map(element).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The element's rendered text.
    pub fn text(&self, element: &Element) -> Result<String> {
        let value = self.call("GET", &format!("/element/{}/text", element.0), None)?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// The element's attribute `name`, or `None` when it has none.
    pub fn attr(&self, element: &Element, name: &str) -> Result<Option<String>> {
        let path = format!("/element/{}/attribute/{name}", element.0);
        Ok(self.call("GET", &path, None)?.as_str().map(str::to_owned))
    }

    /// Clicks the element.
    pub fn click(&self, element: &Element) -> Result<()> {
        let path = format!("/element/{}/click", element.0);
        self.call("POST", &path, Some(json!({}))).map(drop)
    }

    /// Runs `script` as a function body in the page and returns what it returns.
    pub fn execute(&self, script: &str) -> Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let value = self.call("GET", "/screenshot", None)?;
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .map_err(|e| WebDriverError {
                status: 200,
                error: "bad answer".into(),
                message: format!("screenshot is not base64: {e}"),
            })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = send(&self.agent, "DELETE", &self.base, None);
    }
}

fn locator(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn element(value: &Value) -> Result<Element> {
    value[ELEMENT]
        .as_str()
        .map(|id| Element(id.to_owned()))
        .ok_or_else(|| WebDriverError {
            status: 200,
            error: "bad answer".into(),
            message: format!("not an element: {value}"),
        })
}

/// One WebDriver command: the answer's `value`, or its error.
fn send(agent: &ureq::Agent, method: &str, url: &str, body: Option<Value>) -> Result<Value> {
    let lost = |e: ureq::Error| WebDriverError {
        status: 0,
        error: "no answer".into(),
        message: format!("{method} {url}: {e}"),
    };
    let mut response = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, body) => agent
            .post(url)
            .content_type("application/json")
            .send(body.unwrap_or(Value::Null).to_string()),
    }
    .map_err(lost)?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(lost)?;
    let answer: Value = serde_json::from_str(&text).map_err(|e| WebDriverError {
        status,
        error: "bad answer".into(),
        message: format!("{method} {url}: not JSON ({e}): {text}"),
    })?;
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if status == 200 {
        return Ok(value);
    }
    Err(WebDriverError {
        status,
        error: value["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_owned(),
        message: value["message"].as_str().unwrap_or_default().to_owned(),
    })
}
