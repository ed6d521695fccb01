// The app's own MongoDB user: readWrite on the app's database, nothing else (no admin, no
// other database). The official mongo image runs /docker-entrypoint-initdb.d/*.js once, with
// mongosh logged in as MONGO_INITDB_ROOT_USERNAME, when it starts on an empty data directory;
// an existing data directory needs the same createUser once by hand (docs/operations.md).
//   MONGO_APP_USERNAME   default shardline
//   MONGO_APP_DATABASE   default shardline (the database in MONGO_URL)
//   MONGO_APP_PASSWORD   or MONGO_APP_PASSWORD_FILE (a Docker secret); required
const fs = require("fs");

function setting(name, fallback) {
  const file = process.env[`${name}_FILE`];
  const value = file ? fs.readFileSync(file, "utf8").trim() : process.env[name] || fallback;
  if (!value) {
    // Fails the first start loudly rather than leaving the app without a user.
    throw new Error(`${name} (or ${name}_FILE) is required`);
  }
  return value;
}

const appUser = setting("MONGO_APP_USERNAME", "shardline");
const appDatabase = setting("MONGO_APP_DATABASE", "shardline");
db.getSiblingDB(appDatabase).createUser({
  user: appUser,
  pwd: setting("MONGO_APP_PASSWORD"),
  roles: [{ role: "readWrite", db: appDatabase }],
});
print(`created ${appUser} (readWrite on ${appDatabase})`);
