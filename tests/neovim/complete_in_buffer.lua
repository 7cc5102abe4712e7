-- Headless Neovim 0.11 as a real LSP client: attach oss-edge to a Python buffer, ask for a completion at the end of
-- its last line through the built-in client, apply the item's text edit with Neovim's own code, write the buffer.
-- Inputs and outputs go through environment variables (OSS_EDGE_TEST_*); the result is a JSON file.
vim.cmd('filetype plugin indent on')
local env = vim.env
vim.lsp.config('oss_edge', {
  cmd = vim.json.decode(env.OSS_EDGE_TEST_CMD),
  filetypes = { 'python' },
  root_markers = { '.git' },
  init_options = vim.json.decode(env.OSS_EDGE_TEST_OPTIONS),
})
vim.lsp.enable('oss_edge')
vim.cmd.edit(env.OSS_EDGE_TEST_FILE)

local function finish(result)
  vim.fn.writefile({ vim.json.encode(result) }, env.OSS_EDGE_TEST_RESULT)
  vim.cmd('qall!')
end

local function main()
  local attached = vim.wait(30000, function()
    return #vim.lsp.get_clients({ bufnr = 0, name = 'oss_edge' }) > 0
  end, 50)
  if not attached then
    return { error = 'the server never attached' }
  end
  local client = vim.lsp.get_clients({ bufnr = 0, name = 'oss_edge' })[1]
  local buffer = vim.api.nvim_get_current_buf()
  local row = vim.api.nvim_buf_line_count(buffer)
  local line = vim.api.nvim_buf_get_lines(buffer, row - 1, row, false)[1]
  -- the cursor after the last character, as in insert mode, in the units the client and server agreed on
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buffer) },
    position = { line = row - 1, character = vim.str_utfindex(line, client.offset_encoding) },
    context = { triggerKind = 1 },
  }

  local item
  vim.wait(90000, function()
    local response = client:request_sync('textDocument/completion', params, 10000, buffer)
    local result = response and response.result
    local items = result and (result.items or result)
    if items and #items > 0 then
      item = items[1]
      return true
    end
    return false
  end, 100)
  if not item then
    return { error = 'no completion within the time limit' }
  end
  vim.lsp.util.apply_text_edits({ item.textEdit }, buffer, client.offset_encoding)
  vim.cmd('write')
  return { encoding = client.offset_encoding, label = item.label, new_text = item.textEdit.newText }
end

local ok, result = pcall(main)
finish(ok and result or { error = tostring(result) })
