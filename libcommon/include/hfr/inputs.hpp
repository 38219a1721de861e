// The items a tool's inputs name: image files, folders (recursive, sorted,
// include/exclude globs, the first sub-folder is the subject), JSON-lines
// records with a path field (relative to the records file), or "-" (records
// on stdin). Shared by the tools that read photos (hfr-embed, hfr-reconstruct).
#pragma once
#include <string>
#include <vector>

#include "hfr/records.hpp"

namespace hfr::inputs {

struct Spec {
  std::vector<std::string> inputs;             // images, folders, records files, "-"
  std::vector<std::string> include, exclude;   // glob patterns on folder-relative paths
  std::string path_field = "path", id_field = "id", subject_field = "subject";
  std::vector<std::string> drop_fields;        // record fields not passed through (the tool's own outputs)
};

struct Item {
  std::string path;      // as opened
  std::string id;
  std::string subject;   // "" = unknown
  std::string error;     // set when the input entry itself is bad
  Record extra = Record::object();  // pass-through fields of an input record
};

std::vector<Item> enumerate(const Spec& spec);

// A path as written into records: relative to the records file's folder (how
// readers resolve it); as given when the records go to stdout; absolute paths
// stay absolute when keep_absolute.
std::string relative_ref(const std::string& path, const std::string& records_path, bool keep_absolute);

// The folder a records file's relative paths are resolved against: its own
// ("" for "-": relative to the working directory).
std::string records_folder(const std::string& records_path);

// A path read from a records file (relative_ref's inverse): relative paths
// are taken from `folder` (records_folder), absolute ones as they are.
std::string resolve_ref(const std::string& ref, const std::string& folder);

// A record's identity field as text: a string as it is, any other value as
// JSON (numeric subject ids), "" when absent or null.
std::string field_text(const Record& r, const std::string& field);

// The start of an output record for an item: id, path (relative_ref, absolute
// paths kept), subject, and the item's pass-through fields.
Record base_record(const Item& item, const std::string& records_path);

// A warning line for an item's error: "ID: ERROR", or the error alone when it
// already starts with the item's path.
std::string describe(const Item& item, const std::string& error);

// A file name stem for an id: letters, digits, '-', '_' and '.' kept, the
// rest '_', no leading dots, at most 200 characters ("face" if nothing is left).
std::string file_stem(const std::string& id);

}  // namespace hfr::inputs
