/* rng.h -- a small seeded generator (splitmix64 seeding xoshiro256**) so
 * initialisation is reproducible across platforms and independent of libc. */
#ifndef WM_RNG_H
#define WM_RNG_H
#include <stdint.h>

typedef struct { uint64_t s[4]; } wmi_rng;

void     wmi_rng_seed(wmi_rng *r, uint64_t seed);
uint64_t wmi_rng_next(wmi_rng *r);
double   wmi_rng_uniform(wmi_rng *r);  /* in (0, 1) */
double   wmi_rng_normal(wmi_rng *r);   /* standard normal (Box-Muller) */
#endif
