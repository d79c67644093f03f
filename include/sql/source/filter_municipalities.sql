-- Appended to the extract and its count for a correction (P9): one municipality's residents only,
-- under its 2025 code and the pre-2025 codes merged into it. {codes} is replaced by quoted
-- five-digit NIS codes, each checked against ^[0-9]{5}$ first (a COPY takes no bind parameters).
AND nis_code_hoofdverblijf IN ({codes})
