// config_internal.h — what the config files share: config.c (the key table, lookups),
// config_value.c (values, overrides), config_check.c (checks across keys) and config_file.c (the
// file parser). Not for use outside runtime/config*.c.
#ifndef TESSERA_CONFIG_INTERNAL_H
#define TESSERA_CONFIG_INTERNAL_H

#include "runtime/config.h"

// A line holds at most this many characters (libinih's buffer is 200 bytes: the line, '\n' and
// the terminating NUL). Strings are limited so that config_write's `key = "..."` lines fit.
#define CFG_MAX_LINE     198
#define CFG_MAX_STRING   180
#define CFG_MAX_SECTIONS 16

// Section names in table order (each section's keys are listed together); returns the count.
int cfg_sections(const char **names);
int cfg_find_section(const char *name);                  // index into cfg_sections, or -1
int cfg_find_key(const char *section, const char *name); // index into cfg_keys, or -1
// "did you mean": the closest key (a key of that name in another section counts too), or -1;
// the closest section name, or NULL
int cfg_suggest_key(const char *section, const char *name);
const char *cfg_suggest_section(const char *name);
void cfg_section_list(char *buf, size_t n); // "run, model, ..."

// Record where key k was just set (from: file or override; line: for a file; text: the file
// name or the argument), after every key set so far.
void cfg_set_origin(tessera_config *cfg, int k, cfg_from from, int line, const char *text);

// Parse a value for key k into cfg. in_file: file syntax (strings quoted, a '#' comment may
// follow); else command-line syntax (strings may be bare). On error returns 0 with err holding
// "expected ..., got ...".
int cfg_parse_value(const cfg_key *k, const char *text, int in_file, tessera_config *cfg, char *err,
                    size_t errn);
// The field's value in file syntax (config_value.c).
void cfg_format_value(const cfg_key *k, const tessera_config *cfg, char *buf, size_t n);

#endif
