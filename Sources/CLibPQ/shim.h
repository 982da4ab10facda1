/* libpq, PostgreSQL's C client library (Debian: libpq-dev; pkg-config libpq), for the
 * PostgreSQL storage plugin (Sources/KofkaPostgres). */
#include <libpq-fe.h>
