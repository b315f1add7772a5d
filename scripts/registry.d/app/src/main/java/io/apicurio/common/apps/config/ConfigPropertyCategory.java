package io.apicurio.common.apps.config;

/**
 * The categories that Apicurio Registry 3.0.9's classes give their configuration properties
 * (in {@link Info#category()}). Its config-definitions 3.0.9 jar, which holds this type, is
 * not served by Maven Central here, and the 3.0.6 one that is lacks it; the constants are
 * those the 3.0.9 classes refer to.
 */
public enum ConfigPropertyCategory {
    CATEGORY_API,
    CATEGORY_AUTH,
    CATEGORY_CACHE,
    CATEGORY_CCOMPAT,
    CATEGORY_DOWNLOAD,
    CATEGORY_GITOPS,
    CATEGORY_HEALTH,
    CATEGORY_IMPORT,
    CATEGORY_LIMITS,
    CATEGORY_REDIRECTS,
    CATEGORY_REST,
    CATEGORY_SEMVER,
    CATEGORY_STORAGE,
    CATEGORY_SYSTEM,
    CATEGORY_UI
}
