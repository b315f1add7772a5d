//! User agent → device class, browser and operating system.
//!
//! A small classifier of our own rather than a regex database: the analytics need three
//! coarse labels, and the order of the checks below is what makes it right (Edge and
//! Opera before Chrome, Chrome before Safari, tablets before phones, bots first).
//! Anything it does not recognise is `other`, never an error.

/// What a user agent says about the visitor's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub class: &'static str,
    /// `chrome`, `firefox`, `safari`, `edge`, `opera`, `samsung` or `other`.
    pub browser: &'static str,
    /// `windows`, `macos`, `ios`, `android`, `linux`, `chromeos` or `other`.
    pub os: &'static str,
}

/// Classifies a user agent string.
pub fn parse(user_agent: &str) -> Device {
    let ua = user_agent.to_ascii_lowercase();
    let has = |s: &str| ua.contains(s);
    if ua.trim().is_empty() {
        return Device {
            class: "other",
            browser: "other",
            os: "other",
        };
    }
    let os = if has("windows") {
        "windows"
    } else if has("iphone") || has("ipad") || has("ipod") {
        "ios"
    } else if has("android") {
        "android"
    } else if has("cros") {
        "chromeos"
    } else if has("mac os x") || has("macintosh") {
        "macos"
    } else if has("linux") {
        "linux"
    } else {
        "other"
    };
    let browser = if has("edg/") || has("edge/") || has("edga/") || has("edgios/") {
        "edge"
    } else if has("opr/") || has("opera") {
        "opera"
    } else if has("samsungbrowser") {
        "samsung"
    } else if has("firefox/") || has("fxios/") {
        "firefox"
    } else if has("chrome/") || has("crios/") || has("chromium/") {
        "chrome"
    } else if has("safari/") && has("version/") {
        "safari"
    } else {
        "other"
    };
    let class = if has("bot") || has("crawler") || has("spider") || has("slurp") || has("headless")
    {
        "bot"
    } else if has("ipad") || has("tablet") || (os == "android" && !has("mobile")) {
        "tablet"
    } else if has("mobi") || has("iphone") || has("ipod") || os == "android" {
        "mobile"
    } else if matches!(os, "windows" | "macos" | "linux" | "chromeos") {
        "desktop"
    } else {
        "other"
    };
    Device { class, browser, os }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_agents() {
        let cases = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", ("desktop", "chrome", "windows")),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", ("desktop", "edge", "windows")),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", ("desktop", "safari", "macos")),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", ("mobile", "safari", "ios")),
            ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0 Mobile/15E148 Safari/604.1", ("tablet", "chrome", "ios")),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", ("mobile", "chrome", "android")),
            ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Safari/537.36", ("tablet", "samsung", "android")),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", ("desktop", "firefox", "linux")),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0", ("desktop", "opera", "windows")),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", ("bot", "other", "other")),
            ("curl/8.5.0", ("other", "other", "other")),
            ("", ("other", "other", "other")),
        ];
        for (ua, (class, browser, os)) in cases {
            assert_eq!(parse(ua), Device { class, browser, os }, "{ua}");
        }
    }
}
