package dlpipe.sql;

/** A public method of a Spark or Delta class called by name: classes that this jar does not compile against. */
final class Reflect {
    @SuppressWarnings("unchecked")
    static <T> T call(Object target, String method) {
        try {
            return (T) target.getClass().getMethod(method).invoke(target);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("dlpipe.sql: " + target.getClass() + " has no " + method
                    + "(): a Spark or Delta version dlpipe was not built for", e);
        }
    }

    private Reflect() {
    }
}
