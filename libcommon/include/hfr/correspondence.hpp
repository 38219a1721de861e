// Where MediaPipe's 468 face-mesh points lie on the ICT FaceKit's neutral
// mesh. Computed by the project by registering the two neutral meshes
// (register_facemesh), stored in libcommon/data/ict_facemesh_correspondence.json
// (compiled in) and checked against a fresh registration in the tests.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "hfr/canonical_face.hpp"
#include "hfr/morphable.hpp"

namespace hfr::morph {

struct Correspondence {
  std::int64_t num_vertices = 0, num_triangles = 0;  // of the model it was made for
  std::vector<SurfacePoint> points;                  // one per canonical face vertex (468)
  std::vector<float> distance_cm;                    // registration residual per point
  std::vector<float> spread_cm;                      // calibrated: RMS spread of a point's samples (empty = unknown)
  std::string note;                                  // provenance (free text; the JSON's "note")
};

struct RegistrationReport {
  double rms_cm = 0, max_cm = 0;   // canonical points vs. their corresponding surface points
  int iterations = 0;
};

// Registers the canonical face to the model's neutral face region: a
// similarity from semantic anchors (eye corners, nose, mouth corners, chin;
// the ICT multi-PIE 68 landmarks against their face-mesh counterparts), then
// alternating closest points on the face-region surface with a regularised
// fit of the identity modes to the canonical shape. Deterministic.
Correspondence register_facemesh(const MorphableModel& ict, const CanonicalFace& face,
                                 RegistrationReport* report = nullptr);

// The stored correspondence for the ICT FaceKit (validated); throws if the
// model's vertex or triangle counts differ from those it was made for.
Correspondence builtin_ict_correspondence(const MorphableModel& ict);

// The closest points on the neutral mesh's triangles of `region` (e.g.
// "face_narrow") to model-space points; distances (cm) in *dist if given.
std::vector<SurfacePoint> closest_points(const MorphableModel& m, const std::string& region,
                                         const std::vector<std::array<double, 3>>& points, std::vector<float>* dist = nullptr);

// Face-mesh contours that name areas of a face texture (MediaPipe indices):
// lips, eye_right, eye_left (the lid openings), brow_right, brow_left, nose,
// forehead. Through a correspondence they become UV polygons (uv_polygon)
// for the lighting mask, the specular prior, the region map and test paint.
struct MeshArea {
  std::string name;
  std::vector<int> landmarks;
};
const std::vector<MeshArea>& face_mesh_areas();
std::vector<std::array<float, 2>> uv_polygon(const MorphableModel& m, const Correspondence& c, const std::vector<int>& landmarks);

std::string to_json(const Correspondence& c);  // the stored file's format
Correspondence correspondence_from_json(const std::string& text, const std::string& name);

}  // namespace hfr::morph
