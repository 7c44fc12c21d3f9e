package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the environment variable that points the tests at a
// PostgreSQL server (a connection URL to a database the user may create
// databases from); DefaultPostgres is used when it is unset.
const PostgresEnv = "LEADFLOW_TEST_POSTGRES"

// DefaultPostgres is the local server .ci/run starts: trust auth, user
// postgres.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Postgres creates a fresh database on the test server and returns its
// connection URL. The database is dropped when the test ends, even with
// connections still open. The test fails at once when no server answers:
// nothing here is skipped or faked.
func Postgres(t testing.TB) string {
	t.Helper()
	cfg := postgresAdmin(t)
	name := DatabaseName(t, "leadflow_test")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to PostgreSQL at %s:%d (set %s): %v", cfg.Host, cfg.Port, PostgresEnv, err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	db := cfg.Copy()
	db.Database = name
	return connString(db)
}

// PostgresAdmin is the URL of the test server's database the tests
// create theirs from ($LEADFLOW_TEST_POSTGRES, else DefaultPostgres).
func PostgresAdmin() string {
	if u := os.Getenv(PostgresEnv); u != "" {
		return u
	}
	return DefaultPostgres
}

func postgresAdmin(t testing.TB) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(PostgresAdmin())
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	return cfg
}

// DatabaseName is a fresh database name (prefix and random hex) on the
// test server, for a test or a process it starts to create; whatever is
// created under it is dropped when the test ends, even with connections
// still open.
func DatabaseName(t testing.TB, prefix string) string {
	t.Helper()
	cfg := postgresAdmin(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		// FORCE ends sessions a test left open (a killed child process).
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}

// connString renders a config as a URL; pgx keeps none of its own.
func connString(c *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), Path: "/" + c.Database, RawQuery: "sslmode=disable"}
	u.User = url.User(c.User)
	if c.Password != "" {
		u.User = url.UserPassword(c.User, c.Password)
	}
	return u.String()
}
