/*
 * The part of Fluent Bit's external-plugin ("Go proxy") ABI that an output plugin touches.
 *
 * Written for flb-fanout from the documented layout (shared/reference/abi.md, sections 1-2,
 * LP64), not copied from Fluent Bit. Only the members every supported host (1.9.10 -> 5.x) has
 * are declared as struct fields; members that later hosts append are described in comments
 * and never touched. `make bindings` turns this file into plugin/src/ffi/bindings.rs.
 */
#ifndef FLB_FANOUT_PROXY_ABI_H
#define FLB_FANOUT_PROXY_ABI_H

#include <stddef.h>

/* Return codes of the flush callback (flb_macros.h, identical in every version). */
#define FLB_ERROR 0
#define FLB_OK 1
#define FLB_RETRY 2

/* Values the plugin writes into flb_plugin_proxy_def. */
#define FLB_PROXY_OUTPUT_PLUGIN 2
#define FLB_PROXY_GOLANG 11

/* Log levels understood by log_print / output_log_check (flb_log.h). */
#define FLB_LOG_OFF 0
#define FLB_LOG_ERROR 1
#define FLB_LOG_WARN 2
#define FLB_LOG_INFO 3
#define FLB_LOG_DEBUG 4
#define FLB_LOG_TRACE 5

/*
 * Filled by the plugin in FLBPluginRegister. Allocated by the host and, before 4.2.3, not
 * initialised and exactly 32 bytes long. 4.2.3+/5.0 append `int event_type` (offset 32) and
 * 5.1.1 appends `struct flb_config_map *config_map` (offset 40); writing either on an older
 * host writes past the allocation, so they are deliberately absent here.
 */
struct flb_plugin_proxy_def {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
};

/*
 * Host function table. 8 bytes on 1.9.x (only output_get_property), 56 bytes on
 * 2.0.0-4.0.2, 72 bytes from 4.0.3 (custom_get_property and custom_log_check appended).
 * The host never zeroes it: read a member only when the host is known to have it.
 */
struct flb_api {
    const char *(*output_get_property)(const char *key, void *o_ins);
    /* 2.0.0+ */
    const char *(*input_get_property)(const char *key, void *i_ins);
    void *(*output_get_cmt_instance)(void *o_ins);
    void *(*input_get_cmt_instance)(void *i_ins);
    void (*log_print)(int level, const char *file, int line, const char *fmt, ...);
    int (*input_log_check)(void *i_ins, int level);
    int (*output_log_check)(void *o_ins, int level);
};

/* One per [OUTPUT] instance; the plugin owns remote_context. */
struct flb_plugin_proxy_context {
    void *remote_context;
    void *proxy;
};

/*
 * Argument of FLBPluginInit: the 32-byte prefix of the host's 72-byte struct (the host's own
 * callback pointers follow and are never touched). One per loaded library, shared by every
 * instance and overwritten before each instance's Init.
 */
struct flbgo_output_plugin {
    char *name;
    struct flb_api *api;
    void *o_ins;
    struct flb_plugin_proxy_context *context;
};

/*
 * Fluent Bit 5.1.1 exactly (not 5.0.x, whose config map element is 8 bytes shorter, nor
 * anything later, whose layout is unknown): what the plugin writes only once the host has said
 * it is that version.
 *
 * The registration struct as 5.1.1 allocates it (48 bytes, zeroed): event_type stays 0 (logs);
 * config_map points to the plugin's property table, an array ended by an entry whose name is
 * NULL. Fluent Bit then refuses unknown keys at startup and lists the table for `-h`. It keeps
 * the pointer (and each desc) for the plugin's lifetime and only reads it.
 */
struct flb_mk_list_5_1_1 {
    void *prev;
    void *next;
};

/* struct flb_config_map_val: a union of 8 bytes, the raw template (added during 5.0.x), the
 * list of values of a repeatable key, and a list link. Zero in what the plugin passes. */
struct flb_config_map_val_5_1_1 {
    union {
        int i_num;
        double d_num;
        size_t s_num;
        void *ptr;
    } val;
    char *raw;
    void *mult;
    struct flb_mk_list_5_1_1 _head;
};

/* Types and flags the plugin uses (flb_config_map.h). */
#define FLB_CONFIG_MAP_STR 0
#define FLB_CONFIG_MAP_INT 2
#define FLB_CONFIG_MAP_BOOL 3
#define FLB_CONFIG_MAP_SIZE 5
#define FLB_CONFIG_MAP_CLIST 30
#define FLB_CONFIG_MAP_MULT 1

/* struct flb_config_map: 104 bytes. set_property stays 0: the plugin reads its values itself,
 * so the host never writes through `offset`. */
struct flb_config_map_5_1_1 {
    int type;
    char *name;
    char *def_value;
    int flags;
    int set_property;
    size_t offset;
    char *desc;
    struct flb_config_map_val_5_1_1 value;
    struct flb_mk_list_5_1_1 _head;
};

struct flb_plugin_proxy_def_5_1_1 {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
    int event_type;
    struct flb_config_map_5_1_1 *config_map;
};

/* Signatures of the symbols the host looks up with dlsym. */
typedef int (*flb_plugin_register_fn)(struct flb_plugin_proxy_def *def);
typedef int (*flb_plugin_init_fn)(struct flbgo_output_plugin *plugin);
typedef int (*flb_plugin_flush_ctx_fn)(void *remote_context, const void *data, size_t size,
                                       char *tag);
typedef int (*flb_plugin_flush_fn)(const void *data, size_t size, const char *tag);
typedef int (*flb_plugin_exit_ctx_fn)(void *remote_context);
typedef int (*flb_plugin_exit_fn)(void);
typedef void (*flb_plugin_unregister_fn)(struct flb_plugin_proxy_def *def);

#endif
