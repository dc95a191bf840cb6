/* rng.h -- a small seeded generator (splitmix64 seeding xoshiro256**) so
 * initialisation is reproducible across platforms and independent of libc. */
#ifndef WM_RNG_H
#define WM_RNG_H
#include <stdint.h>

typedef struct { uint64_t s[4]; } wm_rng;

void     wm_rng_seed(wm_rng *r, uint64_t seed);
uint64_t wm_rng_next(wm_rng *r);
double   wm_rng_uniform(wm_rng *r);  /* in (0, 1) */
double   wm_rng_normal(wm_rng *r);   /* standard normal (Box-Muller) */
#endif
