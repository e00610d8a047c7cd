// main.c — the tessera command: dispatches subcommands.
#include <stdio.h>
#include <string.h>

#include "app/commands.h"
#include "base/common.h"
#include "kernels/registry.h"

// the backends this build carries, as the registry lists them: "backends: cpu cuda"
static void print_backends(FILE *out) {
    fprintf(out, "backends:");
    for (int i = 0; i < backend_registry_count(); i++)
        if (!backend_registry_at(i)->missing) fprintf(out, " %s", backend_registry_at(i)->name);
    fprintf(out, "\n");
}

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: tessera <command> [options]\n"
            "\n"
            "commands:\n"
            "  train CONFIG [--section.key=value ...]   train a model (under mpirun: one rank per "
            "process)\n"
            "  config CONFIG [--section.key=value ...]  check a config and print it resolved\n"
            "  prepare [--out DIR] [INPUT ...]           turn text files into token shards "
            "(default: the fortunes corpus)\n"
            "  sample --model FILE [--prompt TEXT] ...   generate text from saved weights\n"
            "  ckpt verify DIR | ckpt info PATH          check a checkpoint against its manifest; "
            "describe a checkpoint or weights file\n"
            "  help                                      this message\n"
            "\n"
            "`tessera COMMAND --help` describes each command's options. Exit codes: 0 done, "
            "2 bad input, 75 peer lost (see docs/exit-codes.md).\n\n");
    print_backends(out);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return TS_EXIT_INPUT;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "config") == 0) return cmd_config(argc - 1, argv + 1);
    if (strcmp(cmd, "prepare") == 0) return cmd_prepare(argc - 1, argv + 1);
    if (strcmp(cmd, "sample") == 0) return cmd_sample(argc - 1, argv + 1);
    if (strcmp(cmd, "ckpt") == 0) return cmd_ckpt(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_usage(stdout);
        return TS_EXIT_OK;
    }
    fprintf(stderr,
            "tessera: error: unknown command '%s' (expected train, config, prepare, sample, ckpt "
            "or help)\n",
            cmd);
    return TS_EXIT_INPUT;
}
