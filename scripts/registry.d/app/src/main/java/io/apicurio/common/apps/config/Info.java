package io.apicurio.common.apps.config;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Documentation of a configuration property, in the shape Apicurio Registry 3.0.9's classes
 * use (a {@link ConfigPropertyCategory} category). The config-definitions 3.0.6 jar that is
 * served has an older shape (a String category) and is used without its own copy.
 */
@Retention(RetentionPolicy.RUNTIME)
@Target({ElementType.FIELD, ElementType.METHOD, ElementType.PARAMETER})
public @interface Info {
    ConfigPropertyCategory category() default ConfigPropertyCategory.CATEGORY_SYSTEM;

    String description() default "";

    String availableSince() default "";

    String registryAvailableSince() default "";

    String studioAvailableSince() default "";

    String[] seeAlso() default {};

    String[] dependsOn() default {};
}
