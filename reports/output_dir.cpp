#include "reports/output_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

namespace normcheck {
namespace fs = std::filesystem;
namespace {

std::string errno_text() { return std::strerror(errno); }

// A name no other process (or earlier call of this one) uses: pid, a counter, random bits.
std::string unique_suffix() {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%d-%u-%08x", int(getpid()), counter++, unsigned(rd()));
  return buf;
}

void write_and_sync(const fs::path& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw OutputError("cannot create " + path.string() + ": " + errno_text());
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = errno_text();
      ::close(fd);
      throw OutputError("cannot write " + path.string() + ": " + why);
    }
    p += n;
    left -= std::size_t(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    throw OutputError("cannot write " + path.string() + ": " + errno_text());
}

// fsync of a directory makes the renames in it durable; failure is not fatal (some
// filesystems refuse it) since the rename itself is what makes the result atomic.
void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// ".<name>.<what>-<unique>" beside `target` (built with append: GCC 12's -Wrestrict misfires on
// the equivalent chain of operator+)
fs::path sibling(const fs::path& target, const char* what) {
  std::string name(".");
  name.append(target.filename().string()).append(".").append(what).append("-").append(unique_suffix());
  return target.parent_path() / name;
}

void remove_quietly(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
}

}  // namespace

const std::vector<std::string>& report_file_names() {
  static const std::vector<std::string> names = {"report.md", "report.json", "report.html"};
  return names;
}

namespace {

fs::path report_dir_path(const std::string& dir) {
  if (dir.empty()) throw OutputError("--out: empty directory name");
  fs::path target = fs::absolute(fs::path(dir)).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();  // "out/" → "out"
  if (target == target.root_path()) throw OutputError("--out " + dir + ": refusing to replace /");
  return target;
}

// DIR may be replaced only if it is (or holds nothing but) a report. Returns whether it exists.
bool check_replaceable(const fs::path& target, const std::string& dir) {
  std::error_code ec;
  const auto st = fs::symlink_status(target, ec);
  if (ec || !fs::exists(st)) return false;
  if (!fs::is_directory(st)) throw OutputError("--out " + dir + ": exists and is not a directory");
  for (const auto& entry : fs::directory_iterator(target)) {
    const std::string name = entry.path().filename().string();
    const auto& ok = report_file_names();
    if (std::find(ok.begin(), ok.end(), name) == ok.end() || !entry.is_regular_file())
      throw OutputError("--out " + dir + ": holds '" + name +
                        "', which is not a normcheck report file; refusing to replace it "
                        "(choose a new or empty directory)");
  }
  return true;
}

}  // namespace

namespace {

// The nearest existing directory at or above `p`, where DIR's parents would be created.
fs::path existing_ancestor(fs::path p) {
  std::error_code ec;
  while (!p.empty() && !fs::exists(p, ec)) {
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  return p;
}

// Whether files can be created where `target` (a file or a directory) will be written: a
// directory is made and removed in its parent, or in the nearest existing ancestor when the
// parents do not exist yet (nothing is left behind). `what` names the option in the message.
void check_writable(const fs::path& target, const std::string& what) {
  const fs::path parent = existing_ancestor(target.parent_path());
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    throw OutputError(what + ": " + parent.string() + " is not a directory");
  const fs::path probe = sibling(parent / target.filename(), "probe");
  if (::mkdir(probe.c_str(), 0700) != 0)
    throw OutputError(what + ": cannot write in " + parent.string() + ": " + errno_text());
  ::rmdir(probe.c_str());
}

}  // namespace

void check_report_dir(const std::string& dir) {
  const fs::path target = report_dir_path(dir);
  check_replaceable(target, dir);
  check_writable(target, "--out " + dir);
}

void check_output_file(const std::string& path) {
  const fs::path target = fs::absolute(fs::path(path)).lexically_normal();
  std::error_code ec;
  if (fs::is_directory(target, ec)) throw OutputError(path + " is a directory");
  check_writable(target, path);
}

void write_report_dir(const std::string& dir, const ReportFiles& files,
                      const std::function<void()>& before_commit) {
  const fs::path target = report_dir_path(dir);
  const fs::path parent = target.parent_path();
  for (const auto& [name, content] : files)
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw OutputError("report file name '" + name + "' is not a plain file name");
  const bool exists = check_replaceable(target, dir);

  fs::create_directories(parent);
  const fs::path tmp = sibling(target, "tmp");
  if (!fs::create_directory(tmp)) throw OutputError("cannot create " + tmp.string());
  try {
    for (const auto& [name, content] : files) write_and_sync(tmp / name, content);
    sync_dir(tmp);
    if (before_commit) before_commit();
    if (!exists) {
      if (std::rename(tmp.c_str(), target.c_str()) != 0)
        throw OutputError("cannot rename " + tmp.string() + " to " + target.string() + ": " +
                          errno_text());
    } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
      remove_quietly(tmp);  // tmp now holds the previous report
    } else {
      // a filesystem without RENAME_EXCHANGE: move the old report aside, then the new one in
      // (DIR is briefly absent, never half written)
      const fs::path old = sibling(target, "old");
      if (std::rename(target.c_str(), old.c_str()) != 0 ||
          std::rename(tmp.c_str(), target.c_str()) != 0)
        throw OutputError("cannot replace " + target.string() + ": " + errno_text());
      remove_quietly(old);
    }
    sync_dir(parent);
  } catch (...) {
    remove_quietly(tmp);
    throw;
  }
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const fs::path target = fs::absolute(fs::path(path)).lexically_normal();
  if (fs::is_directory(target)) throw OutputError(path + " is a directory");
  fs::create_directories(target.parent_path());
  const fs::path tmp = sibling(target, "tmp");
  try {
    write_and_sync(tmp, content);
    if (std::rename(tmp.c_str(), target.c_str()) != 0)
      throw OutputError("cannot rename " + tmp.string() + " to " + target.string() + ": " +
                        errno_text());
    sync_dir(target.parent_path());
  } catch (...) {
    remove_quietly(tmp);
    throw;
  }
}

}  // namespace normcheck
