// Contract: the changes filters ask for at the end of a message (the milter
// modifications: header fields added, inserted, changed or deleted, the
// sender or recipients changed, the body replaced, the message quarantined),
// applied to a Message before it is spooled. No I/O.
//
// Header indexes count every field of the message as the filters saw it:
// the server's own prepended fields (Message::received) first, then the
// message's. ADDHEADER appends; INSHEADER at index i puts the field before
// the i-th (0: first of all); CHGHEADER changes the i-th field of that name
// (counting from 1, 0 taken as 1), deletes it when the value is empty, and
// appends it when there is no i-th one. A value keeps its leading space when
// the milter negotiated SMFIP_HDR_LEADSPC, else gets one; its LF line ends
// become CRLF. REPLBODY pieces from one filter make one new body; a later
// filter's replaces it again. Addresses may come with or without angle
// brackets; a recipient already there is not added twice; deleting one that
// is not there does nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/envelope.h"
#include "core/milter_codec.h"
#include "core/session_config.h"

namespace ringmx {

// One filter's changes, in the order it sent them.
struct MessageEdits {
  std::string filter;  // its name, for logs
  bool header_leading_space = false;
  std::vector<milter::Response> changes;
  bool empty() const { return changes.empty(); }
};

struct EditOutcome {
  bool headers_or_body = false;  // the message's octets changed
  bool envelope = false;         // the sender or recipients changed
  std::string quarantine;        // "filter: reason" of the first quarantine asked for
  std::string error;             // a change that could not be made (the message is refused)
};

// Applies every filter's changes in order. A spilled message (its body on
// disk) can take envelope changes only: a header or body change is an error.
// `ext` and `max_size` check the ESMTP parameters of a changed sender or an
// added recipient; more than `max_recipients` recipients is an error.
EditOutcome apply_edits(Message& msg, const std::vector<MessageEdits>& edits, const Extensions& ext,
                        uint64_t max_size, size_t max_recipients = 100'000);

}  // namespace ringmx
