/* rng.c -- xoshiro256** (Blackman & Vigna), seeded by splitmix64. */
#include <math.h>

#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void wmi_rng_seed(wmi_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t wmi_rng_next(wmi_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double wmi_rng_uniform(wmi_rng *r)
{
    /* 53 random bits, shifted off zero so log() below is finite */
    return ((double)(wmi_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double wmi_rng_normal(wmi_rng *r)
{
    double u1 = wmi_rng_uniform(r), u2 = wmi_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
