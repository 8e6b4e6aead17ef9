/* The host's log_print is C-variadic, which stable Rust cannot define: format here, hand the
 * finished line (and the format the plugin passed) to the Rust side. */
#include <stdarg.h>
#include <stdio.h>

typedef void (*fanout_testhost_sink_fn)(int level, const char *fmt, const char *line);

static fanout_testhost_sink_fn sink;

void fanout_testhost_set_log_sink(fanout_testhost_sink_fn fn) { sink = fn; }

void fanout_testhost_log_print(int level, const char *file, int line, const char *fmt, ...)
{
    char buf[4096]; /* Fluent Bit truncates log messages at about this size too */
    va_list ap;
    (void) file;
    (void) line;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (sink) {
        sink(level, fmt, buf);
    }
}
