// test_tokenizer.c — decoding sampled tokens: llm.c's tokenizer file (magic 20240328), the byte
// tokenizer, and the errors for bad tokenizer files (fields out of bounds, FIFOs). Leaves
// DIR/tok_eot_300.bin for the command-line tests.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/sample.h"
#include "tests/unit/expect.h"

// write a tokenizer file: header (magic, version, n, eot) then length-prefixed pieces
static void write_tokenizer(const char *path, uint32_t magic, uint32_t version, int n,
                            const char *const *pieces, int truncate_last) {
    uint32_t header[256] = {0};
    header[0] = magic;
    header[1] = version;
    header[2] = (uint32_t)n;
    header[3] = (uint32_t)(n - 1); // eot: the last token
    FILE *f = fopen(path, "wb");
    fwrite(header, sizeof header, 1, f);
    for (int i = 0; i < n; i++) {
        unsigned char len = (unsigned char)strlen(pieces[i]);
        fwrite(&len, 1, 1, f);
        size_t bytes = len - (truncate_last && i == n - 1 ? 1 : 0);
        fwrite(pieces[i], 1, bytes, f);
    }
    fclose(f);
}

// a tokenizer file with the given header and pieces
static void write_header_file(const char *path, const uint32_t *header, const char *const *pieces,
                              int n) {
    FILE *f = fopen(path, "wb");
    fwrite(header, sizeof(uint32_t), 256, f);
    for (int i = 0; i < n; i++) {
        unsigned char len = (unsigned char)strlen(pieces[i]);
        fwrite(&len, 1, 1, f);
        fwrite(pieces[i], 1, len, f);
    }
    fclose(f);
}

static char *decode(const tokenizer *tok, const int *ids, int n) {
    static char buf[256];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    for (int i = 0; i < n; i++)
        tokenizer_write(tok, ids[i], f);
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[1024];
    snprintf(path, sizeof path, "%s/tok_test.bin", dir);
    const char *pieces[] = {"Hello", ",", " world", "!", "<|endoftext|>"};
    tokenizer tok;

    write_tokenizer(path, 20240328, 2, 5, pieces, 0);
    CHECK(tokenizer_load(&tok, path, 5) == TS_OK);
    CHECK(tok.eot == 4);
    int ids[] = {0, 1, 2, 3, 7};
    CHECK(strcmp(decode(&tok, ids, 5), "Hello, world!<7>") == 0); // ids past the file: <id>
    tokenizer_free(&tok);

    // version 1 has no end-of-text token
    write_tokenizer(path, 20240328, 1, 5, pieces, 0);
    CHECK(tokenizer_load(&tok, path, 5) == TS_OK && tok.eot == -1);
    tokenizer_free(&tok);

    // errors: bad magic, fewer tokens than the model's vocabulary, truncated, missing, byte
    write_tokenizer(path, 12345, 2, 5, pieces, 0);
    CHECK(tokenizer_load(&tok, path, 5) == TS_ERR_INPUT);
    write_tokenizer(path, 20240328, 2, 5, pieces, 0);
    CHECK(tokenizer_load(&tok, path, 6) == TS_ERR_INPUT);
    write_tokenizer(path, 20240328, 2, 5, pieces, 1);
    CHECK(tokenizer_load(&tok, path, 5) == TS_ERR_INPUT);
    CHECK(tokenizer_load(&tok, "/nonexistent/tokenizer.bin", 5) == TS_ERR_INPUT);
    CHECK(tokenizer_load(&tok, "byte", 300) == TS_ERR_INPUT);

    // fields bounded before use: an end-of-text token the model cannot take (it would be fed to
    // the embedding as a prompt), a count the file cannot hold (2^31-1 would allocate 16 GiB)
    uint32_t header[256] = {20240328, 2, 5, 4};
    header[3] = 5; // eot = vocab
    write_header_file(path, header, pieces, 5);
    CHECK(tokenizer_load(&tok, path, 5) == TS_ERR_INPUT);
    header[3] = 4;
    header[2] = 0x7fffffff;
    write_header_file(path, header, pieces, 5);
    CHECK(tokenizer_load(&tok, path, 5) == TS_ERR_INPUT);
    header[2] = 0xffffffffu; // negative as an int
    write_header_file(path, header, pieces, 5);
    CHECK(tokenizer_load(&tok, path, 5) == TS_ERR_INPUT);
    header[2] = 6; // one more than the file holds, within what its size could hold
    write_header_file(path, header, pieces, 5);
    CHECK(tokenizer_load(&tok, path, 5) == TS_ERR_INPUT);
    // a FIFO is refused at once (reading it would wait for a writer)
    char fifo[1100];
    snprintf(fifo, sizeof fifo, "%s/tok_fifo.bin", dir);
    unlink(fifo);
    CHECK(mkfifo(fifo, 0644) == 0);
    CHECK(tokenizer_load(&tok, fifo, 5) == TS_ERR_INPUT);
    unlink(fifo);

    // left for the command-line tests (tests/cmake/hostile.cmake): 256 one-byte pieces, the
    // end-of-text token 300 (>= the byte model's vocabulary of 256)
    char eot_path[1100];
    snprintf(eot_path, sizeof eot_path, "%s/tok_eot_300.bin", dir);
    const char *bytes256[256];
    static char one[256][2];
    for (int i = 0; i < 256; i++) {
        one[i][0] = (char)(i ? i : ' ');
        bytes256[i] = one[i];
    }
    uint32_t h300[256] = {20240328, 2, 256, 300};
    write_header_file(eot_path, h300, bytes256, 256);
    CHECK(tokenizer_load(&tok, eot_path, 256) == TS_ERR_INPUT);
    h300[3] = 255;
    write_header_file(eot_path, h300, bytes256, 256);
    CHECK(tokenizer_load(&tok, eot_path, 256) == TS_OK && tok.eot == 255);
    tokenizer_free(&tok);
    h300[3] = 300;
    write_header_file(eot_path, h300, bytes256, 256);

    // the byte tokenizer writes bytes; "" prints ids
    CHECK(tokenizer_load(&tok, "byte", 256) == TS_OK);
    int bytes[] = {'o', 'k'};
    CHECK(strcmp(decode(&tok, bytes, 2), "ok") == 0);
    tokenizer_free(&tok);
    CHECK(tokenizer_load(&tok, "", 50257) == TS_OK);
    int gpt2_ids[] = {50256, 11};
    CHECK(strcmp(decode(&tok, gpt2_ids, 2), "<50256><11>") == 0);
    tokenizer_free(&tok);

    remove(path);
    printf("%s: tokenizer tests, %d failure(s)\n", g_failures ? "FAIL" : "PASS", g_failures);
    return g_failures ? 1 : 0;
}
