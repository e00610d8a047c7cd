// cmd_config.c — `tessera config CONFIG [--section.key=value ...] [--world=N]`: read and check a
// config as `tessera train` would, without starting anything, and print it resolved. Tools (the
// launcher) use it to refuse bad input before they lease a single rank and to learn the run
// directory and deadlines.
#include <stdlib.h>
#include <string.h>

#include "app/commands.h"
#include "runtime/config.h"

static void config_cmd_usage(FILE *out) {
    fprintf(out,
            "usage: tessera config CONFIG [--section.key=value ...] [--world=N]\n"
            "\n"
            "Checks CONFIG and the overrides exactly as `tessera train` does for a world of N\n"
            "ranks (default 1) and prints the resolved config (TOML) on stdout. Exit 0 when\n"
            "the config is good, 2 with one error line when it is not.\n");
}

int cmd_config(int argc, char **argv) {
    int world = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_cmd_usage(stdout);
            return TS_EXIT_OK;
        }
        if (strncmp(argv[i], "--world=", 8) == 0) {
            char *end = NULL;
            long n = strtol(argv[i] + 8, &end, 10);
            if (end == argv[i] + 8 || *end != '\0' || n < 1 || n > 1000000) {
                log_error("config: %s: expected --world=N with N a whole number of ranks >= 1",
                          argv[i]);
                return TS_EXIT_INPUT;
            }
            world = (int)n;
        }
    }
    log_init(0, 1);
    const char *path = NULL;
    char *text = NULL;
    size_t len = 0;
    tessera_config cfg;
    config_defaults(&cfg);
    ts_status st = config_find_path(argc, argv, "config", &path);
    if (st == TS_OK) st = config_read_file(path, &text, &len);
    if (st == TS_OK) st = config_parse_text(&cfg, text, len, path);
    free(text);
    if (st == TS_OK) st = config_apply_args(&cfg, argc, argv, "--world=");
    if (st == TS_OK) st = config_validate(&cfg, world);
    if (st != TS_OK) return ts_exit_code(st);
    config_write(&cfg, stdout);
    return fflush(stdout) == 0 ? TS_EXIT_OK : TS_EXIT_SYSTEM;
}
