from django.contrib.auth.hashers import Argon2PasswordHasher


class Argon2idHasher(Argon2PasswordHasher):
    """Argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): about 60 ms a hash on one
    core here, instead of Django's 100 MiB × 8 lanes that costs 220 ms and lets a burst of sign-ins
    exhaust a 2-core server. Same algorithm name, so hashes with other parameters still verify and are
    rehashed at the next sign-in."""

    time_cost = 2
    memory_cost = 19456
    parallelism = 1
