package local.scripts.registry;

import io.smallrye.config.ConfigSourceInterceptor;
import io.smallrye.config.ConfigSourceInterceptorContext;
import io.smallrye.config.ConfigValue;
import jakarta.annotation.Priority;

/**
 * Keeps every named datasource active.
 *
 * <p>The registry injects one datasource per database kind (h2, postgresql, mysql, mssql) and
 * switches off, through its own config interceptor (priority 100), those of the kinds it does
 * not use. Quarkus 3.33 refuses to start with an inactive datasource injected. In this build
 * all four are in-memory H2 (see application.properties), so all may stay active; this
 * interceptor runs before the registry's and answers "true".
 */
@Priority(200)
public class AllDatasourcesActive implements ConfigSourceInterceptor {
    @Override
    public ConfigValue getValue(ConfigSourceInterceptorContext context, String name) {
        if (name.startsWith("quarkus.datasource.") && name.endsWith(".active")) {
            return ConfigValue.builder().withName(name).withValue("true").build();
        }
        return context.proceed(name);
    }
}
