/* Fuzz target: a batch envelope exactly as a push arrives over HTTP, through
 * every step of proto_batch.h and each frame's entry checks. Mutants rarely
 * keep a valid signature, so this mostly drives proto_batch_open and
 * proto_batch_verify; fuzz_batch_signed goes past the signature. */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_batch_receive(data, size, 1);
    return 0;
}
